package gavel.compliance

test_unclassified_allowed if {
	decision.allow with input as {"action": {"data_classes_referenced": []}, "user": {"data_classifications_authorized": []}}
}

test_uncleared_class_denied if {
	d := decision with input as {"action": {"data_classes_referenced": ["confidential"]}, "user": {"data_classifications_authorized": ["public"]}, "environment": {"region": "eu-west-1"}}
	d.reasons == ["data_class_unauthorized_for_user"]
}

test_pii_outside_eu_denied if {
	d := decision with input as {"action": {"data_classes_referenced": ["pii"]}, "user": {"data_classifications_authorized": ["pii"]}, "environment": {"region": "us-east-1"}}
	d.reasons == ["data_residency"]
}
