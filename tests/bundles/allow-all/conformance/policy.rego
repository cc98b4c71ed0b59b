# METADATA
# title: "Allow everything (conformance runs: gavel must be invisible)"
package conformance

decision := {"allow": true}
