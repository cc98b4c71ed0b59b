# METADATA
# title: Data classes and residency
# description: Org-wide compliance layer. A request may only touch data classes
#   the user is cleared for; personal data (pii) only in approved regions.
#   Data classes come from input.action.data_classes_referenced, which gavel
#   fills from each bundle's data.<package>.classification. Data flow across
#   the session — once it has seen a class in data.gavel.compliance.egress.after
#   (input.context.data_classes_seen, what earlier answers carried), the
#   tools that send data out (egress.tools, per server) are refused for the
#   rest of the session (read private data, then write it somewhere public).
package gavel.compliance

classes := {c | some c in input.action.data_classes_referenced}

unauthorized := {c |
	some c in classes
	not c in input.user.data_classifications_authorized
}

violations contains "data_class_unauthorized_for_user" if count(unauthorized) > 0

violations contains "data_residency" if {
	"pii" in classes
	not input.environment.region in data.gavel.compliance.pii_regions
}

# The classes this session has seen that close the way out.
seen_blocking := {c |
	some e in input.context.data_classes_seen
	c := e.class
	c in data.gavel.compliance.egress.after
}

sends_data_out if {
	input.action.type == "tool_call"
	input.action.tool in data.gavel.compliance.egress.tools[input.action.server]
}

violations contains "egress_after_sensitive_read" if {
	sends_data_out
	count(seen_blocking) > 0
}

remedies := {
	"data_class_unauthorized_for_user": sprintf("This touches data classed %v. Ask for clearance, or use data that is not classified.", [sort(classes)]),
	"data_residency": sprintf("This touches data classed %v. Ask for clearance, or use data that is not classified.", [sort(classes)]),
	"egress_after_sensitive_read": sprintf("This session has read data classed %v, so tools that send data out are refused for the rest of it. Start a new session for work that must write.", [sort(seen_blocking)]),
}

decision := {"allow": true, "audit_required": count(classes) > 0} if count(violations) == 0

decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": concat(" ", sort({remedies[r] | some r in violations})),
	"appeal_path": data.gavel.compliance.appeal_path,
	"audit_required": true,
} if count(violations) > 0
