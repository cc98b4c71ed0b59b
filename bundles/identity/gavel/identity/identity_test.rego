package gavel.identity

test_member_allowed if {
	decision.allow with input as {"user": {"id": "ada", "groups": ["engineering"]}}
}

test_unknown_user_denied if {
	d := decision with input as {"user": {"id": "unknown-user", "groups": ["engineering"]}}
	not d.allow
	d.reasons == ["unknown_user"]
}

test_outsider_denied if {
	d := decision with input as {"user": {"id": "eve", "groups": ["sales"]}}
	d.reasons == ["user_not_in_allowed_group"]
	startswith(d.appeal_path, "https://")
}
