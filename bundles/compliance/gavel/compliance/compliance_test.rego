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

seen_confidential := [{"class": "confidential", "server": "filesystem", "tool": "read_text_file"}]

write_public := {"type": "tool_call", "server": "filesystem", "tool": "write_file", "data_classes_referenced": []}

test_write_after_confidential_read_denied if {
	d := decision with input as {"action": write_public, "context": {"data_classes_seen": seen_confidential}, "user": {"data_classifications_authorized": ["confidential"]}}
	d.reasons == ["egress_after_sensitive_read"]
	contains(d.remediation, "confidential")
}

test_write_in_a_fresh_session_allowed if {
	decision.allow with input as {"action": write_public, "context": {"data_classes_seen": []}, "user": {"data_classifications_authorized": []}}
}

test_read_after_confidential_read_allowed if {
	read := object.union(write_public, {"tool": "read_text_file"})
	decision.allow with input as {"action": read, "context": {"data_classes_seen": seen_confidential}, "user": {"data_classifications_authorized": []}}
}

test_internal_seen_does_not_block if {
	seen := [{"class": "internal", "server": "filesystem", "tool": "read_text_file"}]
	decision.allow with input as {"action": write_public, "context": {"data_classes_seen": seen}, "user": {"data_classifications_authorized": []}}
}
