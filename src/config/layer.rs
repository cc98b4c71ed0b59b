//! The policy layers a bundle can play (`bundle_roles.*.layer`, `.manifest`
//! metadata): named here because the config validates them; how decisions
//! of the layers combine is `decision::layers`' business.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Identity,
    Resource,
    Workflow,
    Compliance,
    Override,
}

impl Layer {
    pub fn parse(s: &str) -> Option<Layer> {
        Some(match s {
            "identity" => Layer::Identity,
            "resource" => Layer::Resource,
            "workflow" => Layer::Workflow,
            "compliance" => Layer::Compliance,
            "override" => Layer::Override,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Identity => "identity",
            Layer::Resource => "resource",
            Layer::Workflow => "workflow",
            Layer::Compliance => "compliance",
            Layer::Override => "override",
        }
    }
}
