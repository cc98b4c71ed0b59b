//! End to end: resource lists decided by result rules (docs/policy.md,
//! "Resource lists") in front of the real npm server-everything, which
//! lists its documents as `demo://resource/static/document/<file>`. One
//! bundle, two identities: a user is not listed `architecture.md` and is
//! refused its read by the same `result_item` rule; an admin is listed and
//! reads it. The list is decided once per upstream list and policy (one
//! record for two lists), its record holds counts, never the dropped
//! resource, and `gavel explain` and `gavel replay` read it; the result
//! metrics move.

use crate::common;

use common::metrics::{scrape, value};
use common::*;
use rmcp::model::ReadResourceRequestParams;
use serde_json::{Value, json};

const DOCS: &str = "demo://resource/static/document/";

const POLICY: &str = r#"package everything
decision := {"allow": true}
default result := {}
result := {"filter": {"items": "content"}} if input.output.kind == "resource_list"
result := {"deny": true, "reasons": ["document_restricted"]} if {
	input.output.kind == "resource_contents"
	some c in input.output.contents
	not result_item with input.item as {"kind": "block", "uri": c.uri}
}
default result_item := false
result_item if not endswith(input.item.uri, "/architecture.md")
result_item if "admin" in input.user.groups
"#;

/// server-everything behind the bundle, for a user in `groups`, with the
/// metrics served on `port`.
fn everything_for(groups: &str, port: u16) -> Setup {
    Setup::with(|s| {
        let b = policy::bundle(&s.path("b"), "docs", "everything", json!({}), POLICY);
        format!(
            "[identity.user]\nid = \"ann\"\ngroups = {groups}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}\
             [servers.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n\
             startup_timeout = \"30s\"\nbundles = [{:?}]\n",
            s.decision_log_table(),
            crate::e2e_everything::everything().display().to_string(),
            b.display().to_string()
        )
    })
}

async fn listed(client: &Client) -> Vec<String> {
    let mut uris: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    uris.sort();
    uris
}

async fn read(client: &Client, file: &str) -> Result<String, rmcp::ServiceError> {
    let r = client
        .read_resource(ReadResourceRequestParams::new(format!("{DOCS}{file}")))
        .await?;
    Ok(serde_json::to_string(&r.contents).unwrap())
}

/// The decision log's records of resource-list decisions.
fn list_records(s: &Setup) -> Vec<Value> {
    s.decisions()
        .into_iter()
        .filter(|r| r.pointer("/input/action/type") == Some(&json!("resource_list")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_identities_are_listed_and_read_what_one_item_rule_allows() {
    let port = free_port();
    let s = everything_for("[]", port);
    let client = s.connect(TestHost::bare()).await;
    let uris = listed(&client).await;
    assert!(
        uris.iter().any(|u| u.ends_with("/features.md")),
        "the documents are listed: {uris:?}"
    );
    assert!(
        !uris.iter().any(|u| u.ends_with("/architecture.md")),
        "a restricted document was listed: {uris:?}"
    );
    assert_eq!(listed(&client).await, uris, "the same list again");
    assert!(read(&client, "features.md").await.unwrap().contains("text"));
    let refused = read(&client, "architecture.md")
        .await
        .expect_err("the hidden document is refused");
    assert_eq!(policy::error_code(&refused), Some(403), "{refused}");
    assert!(
        refused.to_string().contains("already been carried out"),
        "{refused}"
    );

    let metrics = scrape(port).await;
    client.cancel().await.unwrap();
    let lists = list_records(&s);
    assert_eq!(
        lists.len(),
        1,
        "two lists, one upstream list and policy: decided once: {lists:?}"
    );
    let r = &lists[0];
    assert_eq!(r["result_of"], Value::Null);
    assert_eq!(r["result"]["outcome"], "modified");
    assert_eq!(r["result"]["filtered"][0]["dropped"], 1, "{r}");
    assert_eq!(
        r["result"]["filtered"][0]["evaluated"].as_u64(),
        Some(uris.len() as u64 + 1)
    );
    assert!(
        !r.to_string().contains("architecture.md"),
        "the dropped resource is logged: {r}"
    );
    // explain and replay read the list's record: a candidate that hides
    // one more document filters more of the logged list.
    let logp = s.path("decisions.jsonl").display().to_string();
    let id = r["decision_id"].as_str().unwrap();
    let (ok, out, err) = gavel(&["explain", "--decision", id, "--log", &logp]);
    assert!(ok, "{err}");
    assert!(
        out.contains("resource list of server everything") && out.contains("1 dropped"),
        "{out}"
    );
    let stricter = POLICY.replace(
        r#"result_item if not endswith(input.item.uri, "/architecture.md")"#,
        r#"result_item if {
	not endswith(input.item.uri, "/architecture.md")
	not endswith(input.item.uri, "/features.md")
}"#,
    );
    let cand = policy::bundle(&s.path("cand"), "docs", "everything", json!({}), &stricter);
    let (ok, out, err) = replay_bundle(&s.path("decisions.jsonl"), &cand);
    assert!(ok, "{err}");
    assert!(
        out.contains("filters more everything/resources/list data.everything.result_item"),
        "{out}"
    );

    let series = |s: &str| value(&metrics, s);
    assert_eq!(
        series(
            r#"gavel_result_decisions_total{server="everything",tool="resources/list",outcome="modified"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        series(&format!(
            r#"gavel_result_decisions_total{{server="everything",tool="{DOCS}architecture.md",outcome="deny"}}"#
        )),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        series(
            r#"gavel_result_items_filtered_total{server="everything",rule="data.everything.result_item",items="content"}"#
        ),
        1.0,
        "{metrics}"
    );

    // An admin under the same bundle is listed it and reads it.
    let port = free_port();
    let s = everything_for("[\"admin\"]", port);
    let client = s.connect(TestHost::bare()).await;
    let all = listed(&client).await;
    assert_eq!(all.len(), uris.len() + 1, "{all:?}");
    assert!(all.iter().any(|u| u.ends_with("/architecture.md")));
    read(&client, "architecture.md").await.unwrap();
    client.cancel().await.unwrap();
    assert_eq!(list_records(&s)[0]["result"]["outcome"], "pass");
}
