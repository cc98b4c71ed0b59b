//! A minimal MCP echo server over stdio for the benches (`#[path]`-included;
//! the bench binary re-runs itself as one with `--echo-upstream`): blocking
//! line reads and writes on one thread, `echo` its only tool. What an echo
//! upstream costs at its least, so that a bench's machine-wide figures
//! (calls a second on two cores shared by clients, gavel and upstreams)
//! measure gavel rather than the upstream's runtime. The project's Rust
//! fixture (rmcp on tokio, whose stdin is read on the blocking pool) spends
//! ~110 µs of CPU a call on the same echo.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

/// The argument that makes the bench binary this server.
pub const ARG: &str = "--echo-upstream";

/// Serves stdin/stdout until stdin closes.
pub fn serve() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = msg.get("id").filter(|_| msg.get("method").is_some()) else {
            continue; // a notification, or an answer to nothing we asked
        };
        let answer = match msg["method"].as_str().unwrap_or("") {
            "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-echo", "version": "1"}}}),
            "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [{
                "name": "echo", "description": "Echo text back",
                "inputSchema": {"type": "object",
                    "properties": {"text": {"type": "string"}}, "required": ["text"]}}]}}),
            "tools/call" if msg["params"]["name"] == "echo" => {
                let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("");
                json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": text}], "isError": false}})
            }
            other => json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32601, "message": format!("bench echo: no method {other}")}}),
        };
        if serde_json::to_writer(&mut out, &answer).is_err()
            || out.write_all(b"\n").is_err()
            || out.flush().is_err()
        {
            return;
        }
    }
}
