# METADATA
# title: Who may use agent tools at all
# description: Org-wide identity layer, shared by every server. The user must be
#   known and in one of data.gavel.identity.allowed_groups.
package gavel.identity

known_user if input.user.id != "unknown-user"

in_allowed_group if {
	some g in input.user.groups
	g in data.gavel.identity.allowed_groups
}

violations contains "unknown_user" if not known_user

violations contains "user_not_in_allowed_group" if {
	known_user
	not in_allowed_group
}

decision := {"allow": true} if count(violations) == 0

decision := {
	"allow": false,
	"reasons": sort(violations),
	"remediation": "Set identity.user in gavel's config, and ask to be added to one of the allowed groups.",
	"appeal_path": data.gavel.identity.appeal_path,
} if count(violations) > 0
