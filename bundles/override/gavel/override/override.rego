# METADATA
# title: Break-glass for on-call SRE
# description: Org override layer. On-call SREs may read outside the scoped
#   paths (path_outside_scope is waived). Overrides can only waive resource and
#   workflow reasons; identity and compliance denials always stand.
package gavel.override

default decision := {"waive": []}

decision := {"waive": ["path_outside_scope"]} if "sre-oncall" in input.user.groups
