//! `claude-swarm key new|hash`: keys for the server's `api_keys`. The server keeps only a
//! key's SHA-256, so these print the key once and the hash that goes in its config.

use std::{io::Read, process::ExitCode};

use super::{CliResult, KeyCommand};
use crate::api::auth::{ApiKey, digest, new_key, to_hex};

pub(super) fn key(command: KeyCommand, json: bool) -> CliResult {
    match command {
        KeyCommand::New { name, role } => {
            let key = new_key();
            let sha256 = to_hex(&digest(&key));
            // Checks the name and the role as the server will.
            ApiKey::hashed(&name, &role, &sha256)?;
            if json {
                let doc = serde_json::json!({
                    "name": name, "role": role, "key": key, "sha256": sha256,
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!("key:    {key}");
                println!("sha256: {sha256}");
                println!();
                println!(
                    "Clients send `authorization: Bearer <key>` (the CLI reads SWARM_API_KEY)."
                );
                println!("The server keeps only the hash; in its config file:");
                println!("api_keys:\n  - name: {name}\n    role: {role}\n    sha256: {sha256}");
                println!("or in its environment: SWARM_API_KEYS={name}:{role}:{key}");
            }
        }
        KeyCommand::Hash => {
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
            let key = key.trim_end_matches(['\n', '\r']);
            if key.is_empty() {
                return Err(
                    "no key on standard input (`echo -n KEY | claude-swarm key hash`)".into(),
                );
            }
            println!("{}", to_hex(&digest(key)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
