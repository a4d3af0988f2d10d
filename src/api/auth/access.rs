//! The one table of who may call what: every gRPC method and every REST operation, with
//! the role it needs. The guard reads it for both surfaces, and the request metrics name
//! operations by it. A row holds an RPC and the REST operations that do the same thing, so
//! the two surfaces cannot disagree.

use axum::http::Method;

use super::Role;
use crate::api::guard::matches;

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with no key: liveness probes.
    Open,
    /// A key with at least this role (anyone, on a server without keys).
    Key(Role),
}

/// An operation a request asks for, named as the table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operation {
    /// `package.Service/Method`, `METHOD /path/{param}`, or [`UNMATCHED`].
    pub name: &'static str,
    pub access: Access,
}

/// The name of a request no row matches (a 404 or 405 to be): it still needs a key.
pub const UNMATCHED: &str = "unmatched";

struct Rule {
    access: Access,
    /// The gRPC method, `package.Service/Method`.
    rpc: Option<&'static str>,
    /// The REST operations, `METHOD /path` with `{param}` segments as the router has them.
    rest: &'static [&'static str],
}

const fn rule(access: Access, rpc: Option<&'static str>, rest: &'static [&'static str]) -> Rule {
    Rule { access, rpc, rest }
}

const OPEN: Access = Access::Open;
const READ: Access = Access::Key(Role::Read);
const OPERATE: Access = Access::Key(Role::Operate);
const ADMIN: Access = Access::Key(Role::Admin);

/// Every operation served, once. A task or workflow with a shell `command` needs `admin`
/// besides the role here; the service checks that on the request's content.
#[rustfmt::skip]
const RULES: &[Rule] = &[
    // The server.
    rule(OPEN,    Some("grpc.health.v1.Health/Check"),                    &["GET /health"]),
    rule(OPEN,    Some("grpc.health.v1.Health/Watch"),                    &[]),
    // Nodes of one database: the link checks the database's secret itself.
    rule(OPEN,    Some("claude_swarm.v1.NodeService/Attach"),             &[]),
    rule(READ,    Some("claude_swarm.v1.SwarmService/GetStatus"),         &["GET /status"]),
    // What the agents may spend: lifting an account's usage-limit pause is admin's.
    rule(ADMIN,   Some("claude_swarm.v1.SwarmService/ResumeAccount"),     &["POST /accounts/{name}/resume"]),
    rule(READ,    None,                                       &["GET /metrics", "GET /openapi.json", "GET /docs"]),
    rule(READ,    Some("grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),      &[]),
    rule(READ,    Some("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"), &[]),
    // Tasks.
    rule(OPERATE, Some("claude_swarm.v1.TaskService/SubmitTask"),         &["POST /tasks"]),
    rule(OPERATE, Some("claude_swarm.v1.TaskService/SubmitTasks"),        &["POST /tasks/batch"]),
    rule(READ,    Some("claude_swarm.v1.TaskService/ListTasks"),          &["GET /tasks"]),
    rule(READ,    Some("claude_swarm.v1.TaskService/GetTask"),            &["GET /tasks/{id}"]),
    rule(OPERATE, Some("claude_swarm.v1.TaskService/CancelTask"),         &["DELETE /tasks/{id}"]),
    // Instances.
    rule(ADMIN,   Some("claude_swarm.v1.InstanceService/SpawnInstances"), &["POST /instances/spawn"]),
    rule(READ,    Some("claude_swarm.v1.InstanceService/ListInstances"),  &["GET /instances"]),
    rule(READ,    Some("claude_swarm.v1.InstanceService/GetInstance"),    &["GET /instances/{id}"]),
    rule(ADMIN,   Some("claude_swarm.v1.InstanceService/TerminateInstance"), &["DELETE /instances/{id}"]),
    rule(ADMIN,   Some("claude_swarm.v1.InstanceService/ScaleInstances"), &["POST /instances/scale"]),
    // Workflows.
    rule(OPERATE, Some("claude_swarm.v1.WorkflowService/ExecuteWorkflow"), &["POST /workflows/execute"]),
    rule(READ,    Some("claude_swarm.v1.WorkflowService/ValidateWorkflow"), &["POST /workflows/validate"]),
    rule(READ,    Some("claude_swarm.v1.WorkflowService/GetWorkflow"),    &["GET /workflows/{id}"]),
    rule(READ,    Some("claude_swarm.v1.WorkflowService/ListWorkflows"),  &["GET /workflows"]),
    rule(OPERATE, Some("claude_swarm.v1.WorkflowService/CancelWorkflow"), &["DELETE /workflows/{id}"]),
    // Approvals. "always" for the whole swarm needs admin besides; the service checks that.
    rule(READ,    Some("claude_swarm.v1.ApprovalService/ListApprovals"),  &["GET /approvals"]),
    rule(READ,    Some("claude_swarm.v1.ApprovalService/GetApproval"),    &["GET /approvals/{id}"]),
    rule(OPERATE, Some("claude_swarm.v1.ApprovalService/DecideApproval"), &["POST /approvals/{id}/decision"]),
    // Events, and the token a browser opens them with.
    rule(READ,    Some("claude_swarm.v1.EventService/StreamEvents"),      &["GET /events", "GET /ws/stream"]),
    rule(READ,    None,                                                   &["POST /auth/stream-token"]),
    // The audit of every state-changing call: who did what.
    rule(ADMIN,   Some("claude_swarm.v1.AuditService/ListAudit"),         &["GET /audit"]),
    // Schedules run work unattended: changing them is admin's; looking is a read.
    rule(ADMIN,   Some("claude_swarm.v1.ScheduleService/CreateSchedule"), &["POST /schedules"]),
    rule(READ,    Some("claude_swarm.v1.ScheduleService/ListSchedules"),  &["GET /schedules"]),
    rule(READ,    Some("claude_swarm.v1.ScheduleService/GetSchedule"),    &["GET /schedules/{id}"]),
    rule(ADMIN,   Some("claude_swarm.v1.ScheduleService/PauseSchedule"),  &["POST /schedules/{id}/pause"]),
    rule(ADMIN,   Some("claude_swarm.v1.ScheduleService/ResumeSchedule"), &["POST /schedules/{id}/resume"]),
    rule(ADMIN,   Some("claude_swarm.v1.ScheduleService/DeleteSchedule"), &["DELETE /schedules/{id}"]),
    rule(ADMIN,   Some("claude_swarm.v1.ScheduleService/TriggerNow"),     &["POST /schedules/{id}/trigger"]),
    // Webhooks send the swarm's events out; a URL may itself be a secret (Slack's are),
    // so even the list is admin's. The delivery log shows no URL: a read.
    rule(ADMIN,   Some("claude_swarm.v1.WebhookService/CreateWebhook"),   &["POST /webhooks"]),
    rule(ADMIN,   Some("claude_swarm.v1.WebhookService/ListWebhooks"),    &["GET /webhooks"]),
    rule(ADMIN,   Some("claude_swarm.v1.WebhookService/DeleteWebhook"),   &["DELETE /webhooks/{id}"]),
    rule(READ,    Some("claude_swarm.v1.WebhookService/ListDeliveries"),  &["GET /webhooks/{id}/deliveries"]),
    // Who the caller's key is, so a page shows only what that key may do.
    rule(READ,    Some("claude_swarm.v1.CallerService/GetCaller"),        &[]),
    // The dashboard's files: the page asks for a key itself, and holds no data.
    rule(OPEN,    None,                        &["GET /", "GET /assets/app.js", "GET /assets/app.css"]),
];

/// The operation `method path` asks for. `HEAD` is `GET`; a CORS preflight (`OPTIONS`)
/// is open, as a browser sends no credentials with one and it runs nothing.
pub fn operation(method: &Method, path: &str) -> Operation {
    if method == Method::OPTIONS {
        return Operation {
            name: "OPTIONS",
            access: OPEN,
        };
    }
    let method = if method == Method::HEAD {
        Method::GET.as_str()
    } else {
        method.as_str()
    };
    let rpc = path.strip_prefix('/');
    for rule in RULES {
        if let Some(name) = rule.rpc.filter(|name| Some(*name) == rpc) {
            return Operation {
                name,
                access: rule.access,
            };
        }
        for &name in rule.rest {
            if let Some((m, pattern)) = name.split_once(' ')
                && m == method
                && matches(pattern, path)
            {
                return Operation {
                    name,
                    access: rule.access,
                };
            }
        }
    }
    Operation {
        name: UNMATCHED,
        access: READ,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use pbjson_types::FileDescriptorSet;
    use prost::Message as _;

    use super::*;
    use crate::{api::rest, pb};

    /// `package.Service/Method` of every method the server serves.
    fn every_rpc() -> BTreeSet<String> {
        let sets = [
            pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut rpcs = BTreeSet::new();
        for set in sets {
            for file in FileDescriptorSet::decode(set).unwrap().file {
                for service in &file.service {
                    for method in &service.method {
                        rpcs.insert(format!(
                            "{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        rpcs
    }

    #[test]
    fn the_table_has_every_rpc_and_route_served_once_and_nothing_else() {
        let rpcs: Vec<&str> = RULES.iter().filter_map(|r| r.rpc).collect();
        let listed: BTreeSet<String> = rpcs.iter().map(|r| r.to_string()).collect();
        assert_eq!(listed.len(), rpcs.len(), "an RPC is listed twice");
        assert_eq!(listed, every_rpc());

        let routes: Vec<&str> = RULES.iter().flat_map(|r| r.rest).copied().collect();
        let listed: BTreeSet<String> = routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(listed.len(), routes.len(), "a route is listed twice");
        let served: BTreeSet<String> = rest::route_table()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(listed, served);
    }

    /// Independently of the table: what only reads needs `read` at most, what changes
    /// anything at least `operate`. Only health is open.
    #[test]
    fn reads_need_read_and_changes_need_more() {
        let reads_rpc = |name: &str| {
            let method = name.rsplit('/').next().unwrap();
            [
                "Get",
                "List",
                "Stream",
                "Validate",
                "Check",
                "Watch",
                "ServerReflection",
            ]
            .iter()
            .any(|prefix| method.starts_with(prefix))
        };
        for rule in RULES {
            let names = rule.rpc.into_iter().chain(rule.rest.iter().copied());
            for name in names {
                let reads = match name.split_once(' ') {
                    // A stream token and a workflow's validation are POSTs that change
                    // nothing.
                    Some((method, path)) => {
                        method == "GET"
                            || path == "/auth/stream-token"
                            || path == "/workflows/validate"
                    }
                    None => reads_rpc(name),
                };
                // The node link checks the database's secret itself.
                let open = name.contains("Health/")
                    || name == "claude_swarm.v1.NodeService/Attach"
                    || name == "GET /health"
                    || name == "GET /"
                    || name.starts_with("GET /assets/");
                // Who did what is for admins only, though reading it changes nothing.
                let audit = name.contains("AuditService/") || name == "GET /audit";
                // The webhook list shows URLs, which may themselves be secrets (Slack's).
                let reads = reads && !name.ends_with("/ListWebhooks") && name != "GET /webhooks";
                let expected = match (open, reads) {
                    _ if audit => "admin",
                    (true, _) => "open",
                    (false, true) => "read",
                    (false, false) => "operate or admin",
                };
                let fits = match rule.access {
                    Access::Open => open,
                    Access::Key(role) if audit => role == Role::Admin,
                    Access::Key(role) => !open && reads == (role == Role::Read),
                };
                assert!(fits, "{name}: {:?}, expected {expected}", rule.access);
            }
        }
    }

    #[test]
    fn requests_find_their_operation() {
        let find = |method: Method, path: &str| operation(&method, path);
        assert_eq!(
            find(Method::DELETE, "/tasks/abc"),
            Operation {
                name: "DELETE /tasks/{id}",
                access: OPERATE
            }
        );
        assert_eq!(find(Method::HEAD, "/tasks/abc").name, "GET /tasks/{id}");
        assert_eq!(find(Method::GET, "/ws/stream").name, "GET /ws/stream");
        assert_eq!(
            find(
                Method::POST,
                "/claude_swarm.v1.InstanceService/ScaleInstances"
            )
            .access,
            ADMIN
        );
        assert_eq!(find(Method::GET, "/health").access, OPEN);
        assert_eq!(find(Method::OPTIONS, "/tasks").access, OPEN);
        for (method, path) in [
            (Method::PUT, "/tasks"),
            (Method::GET, "/nothing/here"),
            (Method::POST, "/claude_swarm.v1.TaskService/Nope"),
            (Method::GET, "/grpc.health.v1.Health"),
        ] {
            assert_eq!(
                find(method, path),
                Operation {
                    name: UNMATCHED,
                    access: READ
                },
                "{path}"
            );
        }
    }
}
