//! The REST gateway's JSON decoding: any body becomes an API message (and the submission's
//! fields an engine task spec) or a 400 naming the field, never a panic.
#![no_main]

use claude_swarm::{api::rest::decode_body, engine::TaskSpec, pb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = decode_body::<pb::TaskSpec>(data) {
        let _ = TaskSpec::try_from(spec);
    }
    if let Ok(request) = decode_body::<pb::SubmitTasksRequest>(data) {
        for spec in request.tasks {
            let _ = TaskSpec::try_from(spec);
        }
    }
    let _ = decode_body::<pb::SubmitTaskRequest>(data);
    let _ = decode_body::<pb::ExecuteWorkflowRequest>(data);
    let _ = decode_body::<pb::ScaleInstancesRequest>(data);
});
