//! The handle to the engine: cheap to clone, every surface (gRPC, REST, the command line)
//! holds one. Each call is an input sent to the actor with a reply channel; the answer
//! comes once the turn that handled it is stored.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Approval, Instance, SwarmStatus, Task, TaskPage, TaskQuery, TaskSpec, WorkflowInfo,
    actor::{self, Msg},
    core::{Answer, ApprovalQuery, CallId, Decision, EngineConfig, Input},
    error::{EngineError, Result},
    events::Subscription,
    model::{account::AccountSummary, event::EventFilter, task::TaskId},
    ports::{Agent, Snapshot, Store, StoreError},
    schedule::{Schedule, ScheduleSpec},
    workflow::WorkflowPlan,
};

/// The handle to the engine. Cheap to clone; every surface (gRPC, REST, CLI) uses it.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Msg>,
    next_call: Arc<AtomicU64>,
    /// To describe it, measure runs, and end what it keeps at shutdown.
    agent: Arc<dyn Agent>,
    started: Instant,
    /// Set once the actor has ended, with the reason.
    stopped: watch::Receiver<Option<String>>,
}

impl Engine {
    /// Starts the engine in memory on the current tokio runtime.
    pub fn start(config: EngineConfig, agent: Arc<dyn Agent>) -> Self {
        Self::launch(config, agent, None, Snapshot::default())
    }

    /// Starts the engine on a durable store: what it holds comes back first, and from then
    /// on every change is stored before it is acknowledged.
    pub fn start_durable(
        config: EngineConfig,
        agent: Arc<dyn Agent>,
        mut store: Box<dyn Store>,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load()?;
        let store = actor::StoreThread::spawn(store)?;
        Ok(Self::launch(config, agent, Some(store), snapshot))
    }

    fn launch(
        config: EngineConfig,
        agent: Arc<dyn Agent>,
        store: Option<actor::StoreThread>,
        snapshot: Snapshot,
    ) -> Self {
        let (tx, stopped) = actor::spawn(config, agent.clone(), store, snapshot);
        Self {
            tx,
            next_call: Arc::new(AtomicU64::new(1)),
            agent,
            started: Instant::now(),
            stopped,
        }
    }

    /// Resolves once the engine's actor has ended, with the reason (it should not while
    /// any handle is alive: this is how `serve` learns of a bug and stops serving).
    pub fn stopped(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            match stopped.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone().unwrap_or_default(),
                Err(_) => "the engine stopped".to_owned(),
            }
        }
    }

    fn gone(&self) -> EngineError {
        let reason = self.stopped.borrow().clone();
        EngineError::Unavailable(reason.unwrap_or_else(|| "the engine has stopped".into()))
    }

    async fn call<T: FromAnswer>(&self, input: impl FnOnce(CallId) -> Input) -> Result<T> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Call {
            call,
            input: input(call),
            reply,
        };
        self.tx.send(msg).await.map_err(|_| self.gone())?;
        T::from_answer(answer.await.map_err(|_| self.gone())?)
    }

    /// Submits one task. Field names in errors are the spec's (`prompt`).
    pub async fn submit(&self, spec: TaskSpec) -> Result<Task> {
        let mut tasks: Vec<Task> = self
            .call(|call| Input::Submit {
                call,
                specs: vec![spec],
                batch: false,
            })
            .await?;
        tasks
            .pop()
            .ok_or_else(|| EngineError::Internal("a submission answered no task".into()))
    }

    /// Submits tasks all or nothing; they may depend on each other by client-chosen id.
    /// Field names in errors are `tasks[i].field`.
    pub async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<Task>> {
        self.call(|call| Input::Submit {
            call,
            specs,
            batch: true,
        })
        .await
    }

    pub async fn task(&self, id: TaskId) -> Result<Task> {
        self.call(|call| Input::GetTask { call, id }).await
    }

    pub async fn list_tasks(&self, query: TaskQuery) -> Result<TaskPage> {
        self.call(|call| Input::ListTasks { call, query }).await
    }

    pub async fn approvals(&self, query: ApprovalQuery) -> Result<Vec<Approval>> {
        self.call(|call| Input::ListApprovals { call, query }).await
    }

    pub async fn approval(&self, id: String) -> Result<Approval> {
        self.call(|call| Input::GetApproval { call, id }).await
    }

    /// Allows or denies a pending approval; the run waiting on it goes on at once.
    pub async fn decide_approval(&self, id: String, decision: Decision) -> Result<Approval> {
        let decision = Box::new(decision);
        self.call(|call| Input::DecideApproval { call, id, decision })
            .await
    }

    /// Cancels a task; for a running one, answers once its process group is gone.
    pub async fn cancel_task(&self, id: TaskId) -> Result<Task> {
        self.call(|call| Input::CancelTask { call, id }).await
    }

    pub async fn spawn_instances(
        &self,
        count: u32,
        working_directory: Option<PathBuf>,
    ) -> Result<Vec<Instance>> {
        self.call(|call| Input::Spawn {
            call,
            count,
            working_directory,
        })
        .await
    }

    /// Live instances in creation order, with what their running agents use now.
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        let instances: Vec<Instance> = self.call(|call| Input::ListInstances { call }).await?;
        Ok(instances.into_iter().map(|i| self.measured(i)).collect())
    }

    pub async fn instance(&self, id: String) -> Result<Instance> {
        let instance = self.call(|call| Input::GetInstance { call, id }).await?;
        Ok(self.measured(instance))
    }

    fn measured(&self, mut instance: Instance) -> Instance {
        instance.resources = instance.pid.and_then(|pid| self.agent.usage(pid));
        instance
    }

    /// Stops an instance now; a task running on it fails. Answers once its process is gone.
    pub async fn terminate_instance(&self, id: String) -> Result<Instance> {
        self.call(|call| Input::Terminate { call, id }).await
    }

    /// Spawns or stops instances to reach `target` live ones; returns the live instances.
    pub async fn scale(&self, target: i64) -> Result<Vec<Instance>> {
        self.call(|call| Input::Scale { call, target }).await
    }

    /// Another node's machine runs `count` instances for this swarm (its link, see
    /// `crate::cluster`): the new instances, whose runs the agent routes to that node.
    pub async fn join_node(&self, node: String, count: u32) -> Result<Vec<Instance>> {
        self.call(|call| Input::JoinNode { call, node, count })
            .await
    }

    /// `node`'s link is gone: its instances go, and what ran there goes back to the queue.
    pub async fn leave_node(&self, node: String) -> Result<()> {
        self.call(|call| Input::LeaveNode { call, node }).await
    }

    pub async fn execute_workflow(&self, plan: WorkflowPlan) -> Result<WorkflowInfo> {
        self.call(|call| Input::ExecuteWorkflow {
            call,
            plan: Box::new(plan),
        })
        .await
    }

    pub async fn workflow(&self, id: String) -> Result<WorkflowInfo> {
        self.call(|call| Input::GetWorkflow { call, id }).await
    }

    pub async fn workflows(&self) -> Result<Vec<WorkflowInfo>> {
        self.call(|call| Input::ListWorkflows { call }).await
    }

    /// Cancels every unfinished task of the workflow; answers once none is running.
    pub async fn cancel_workflow(&self, id: String) -> Result<WorkflowInfo> {
        self.call(|call| Input::CancelWorkflow { call, id }).await
    }

    pub async fn create_schedule(&self, spec: ScheduleSpec) -> Result<Schedule> {
        self.call(|call| Input::CreateSchedule {
            call,
            spec: Box::new(spec),
        })
        .await
    }

    pub async fn schedule(&self, id: String) -> Result<Schedule> {
        self.call(|call| Input::GetSchedule { call, id }).await
    }

    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        self.call(|call| Input::ListSchedules { call }).await
    }

    /// Pauses (`true`) or resumes a schedule.
    pub async fn pause_schedule(&self, id: String, paused: bool) -> Result<Schedule> {
        self.call(|call| Input::PauseSchedule { call, id, paused })
            .await
    }

    /// Removes a schedule (its runs stay); answers with it as it was.
    pub async fn delete_schedule(&self, id: String) -> Result<Schedule> {
        self.call(|call| Input::DeleteSchedule { call, id }).await
    }

    /// Lifts an account's pause or limit now; answers with its state after.
    pub async fn resume_account(&self, name: String) -> Result<AccountSummary> {
        self.call(|call| Input::ResumeAccount { call, name }).await
    }

    /// Runs a schedule now; answers with the run's workflow.
    pub async fn trigger_schedule(&self, id: String) -> Result<WorkflowInfo> {
        self.call(|call| Input::TriggerSchedule { call, id }).await
    }

    pub async fn status(&self) -> Result<SwarmStatus> {
        let mut status: SwarmStatus = self.call(|call| Input::Status { call }).await?;
        status.uptime = self.started.elapsed();
        status.agent = self.agent.describe();
        Ok(status)
    }

    /// Events after `after` (see [`EventHub::subscribe`]), then live ones.
    pub async fn subscribe(&self, after: Option<u64>, filter: EventFilter) -> Result<Subscription> {
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Subscribe {
            after,
            filter,
            reply,
        };
        self.tx.send(msg).await.map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())?
    }

    /// Stops dispatching and stops every running task's processes. The tasks stay RUNNING
    /// with their attempts, as a crash would leave them, so that the next start retries
    /// them if their policy allows (else fails them as interrupted). Waits at most `limit`.
    pub async fn shutdown(&self, limit: Duration) {
        let stopped = async {
            let _: Result<()> = self.call(|call| Input::Shutdown { call }).await;
            self.agent.shutdown().await;
        };
        let _ = tokio::time::timeout(limit, stopped).await;
    }
}

/// Takes the expected answer out of an [`Answer`].
trait FromAnswer: Sized {
    fn from_answer(answer: Answer) -> Result<Self>;
}

macro_rules! from_answer {
    ($($ty:ty => $variant:ident),+ $(,)?) => {$(
        impl FromAnswer for $ty {
            fn from_answer(answer: Answer) -> Result<Self> {
                match answer {
                    Answer::$variant(value) => value,
                    other => Err(unexpected(stringify!($variant), &other)),
                }
            }
        }
    )+};
}

from_answer! {
    Task => Task,
    Vec<Task> => Tasks,
    TaskPage => TaskPage,
    Instance => Instance,
    Vec<Instance> => Instances,
    WorkflowInfo => Workflow,
    Vec<WorkflowInfo> => Workflows,
    Approval => Approval,
    Vec<Approval> => Approvals,
    Schedule => Schedule,
    Vec<Schedule> => Schedules,
    AccountSummary => Account,
}

impl FromAnswer for SwarmStatus {
    fn from_answer(answer: Answer) -> Result<Self> {
        match answer {
            Answer::Status(value) => *value,
            other => Err(unexpected("Status", &other)),
        }
    }
}

impl FromAnswer for () {
    fn from_answer(answer: Answer) -> Result<Self> {
        match answer {
            Answer::Done => Ok(()),
            other => Err(unexpected("Done", &other)),
        }
    }
}

fn unexpected(wanted: &str, got: &Answer) -> EngineError {
    EngineError::Internal(format!("expected a {wanted} answer, got {got:?}"))
}
