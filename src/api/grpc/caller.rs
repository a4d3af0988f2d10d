//! `CallerService`: who the guard took the caller of this request to be.

use tonic::{Request, Response, Status};

use super::Reply;
use crate::{api::auth::Caller, pb};

/// Answers `GetCaller` from the caller the guard made current.
#[derive(Clone, Copy, Debug)]
pub struct Callers {
    /// Whether the server has keys (a caller without one is refused before this runs).
    pub keys_required: bool,
}

#[tonic::async_trait]
impl pb::caller_service_server::CallerService for Callers {
    async fn get_caller(&self, _: Request<pb::GetCallerRequest>) -> Reply<pb::GetCallerResponse> {
        // The guard sets a caller on every route that needs a key, as this one does.
        let caller = Caller::current()
            .ok_or_else(|| Status::unauthenticated("the request has no caller"))?;
        Ok(Response::new(pb::GetCallerResponse {
            name: caller.name.to_string(),
            role: caller.role.as_str().to_owned(),
            keys_required: self.keys_required,
        }))
    }
}
