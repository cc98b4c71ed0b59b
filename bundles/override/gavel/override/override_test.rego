package gavel.override

test_oncall_waives_scope if {
	decision.waive == ["path_outside_scope"] with input as {"user": {"groups": ["sre-oncall"]}}
}

test_others_waive_nothing if {
	decision.waive == [] with input as {"user": {"groups": ["engineering"]}}
}
