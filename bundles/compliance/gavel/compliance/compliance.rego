# METADATA
# title: Data classes and residency
# description: Org-wide compliance layer. A request may only touch data classes
#   the user is cleared for; personal data (pii) only in approved regions.
#   Data classes come from input.action.data_classes_referenced, which gavel
#   fills from each bundle's data.<package>.classification.
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

decision := {"allow": true, "audit_required": count(classes) > 0} if count(violations) == 0

decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": sprintf("This touches data classed %v. Ask for clearance, or use data that is not classified.", [sort(classes)]),
	"appeal_path": data.gavel.compliance.appeal_path,
	"audit_required": true,
} if count(violations) > 0
