//! The terminal clients: `switchboard agent` over the agent socket and
//! `switchboard chat` over the guest socket, on one node and across two.

use std::time::Duration;

use switchboard::routing::model::{ConversationState, EventBody};

use crate::on_both_engines;
use crate::support::app::EngineKind;
use crate::support::idp::SHOP_ORIGIN;
use crate::support::ws::WAIT;

use super::{Scene, conversation_state, log_of, verified_visitor};

/// A terminal client (`switchboard agent` or `switchboard chat`) with its
/// stdin and stdout piped to the test.
struct Terminal {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Terminal {
    fn spawn(name: &'static str, args: &[&str]) -> Terminal {
        use tokio::io::{AsyncBufReadExt, BufReader};

        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        // Everything the client prints goes to the test's output too, so a
        // failure shows the session.
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                eprintln!("{name}: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// `switchboard agent` at `url` with `token`, once it says the agent is
    /// available.
    async fn agent(url: &str, token: &str) -> Terminal {
        let mut agent = Terminal::spawn(
            "switchboard agent",
            &["agent", "--url", url, "--token", token],
        );
        agent.wait_for("you are available").await;
        agent
    }

    /// `switchboard chat` on `deployment` at the nodes `urls` (in the order
    /// it tries them), from the shop's origin, once it is connected.
    async fn chat(urls: &[&str], deployment: &str) -> Terminal {
        let mut args = vec!["chat"];
        for url in urls {
            args.extend(["--url", url]);
        }
        args.extend(["--deployment", deployment, "--origin", SHOP_ORIGIN]);
        let mut visitor = Terminal::spawn("switchboard chat", &args);
        visitor.wait_for("connected").await;
        visitor
    }

    async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The first line printed from now on that contains `needle`.
    async fn wait_for(&mut self, needle: &str) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self.lines.recv().await.expect("the client exited");
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the client never printed {needle:?}"))
    }

    /// Closes stdin (end of input) and waits for the client to leave.
    async fn quit(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The terminal client: `switchboard agent` takes an offer and replies.
async fn the_terminal_agent_answers(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Terminal").await;
    let mut agent = Terminal::agent(&app.base, &token).await;
    let conversation = scene
        .visitor("is anyone there?", Some(verified_visitor()))
        .await;
    let offer = agent.wait_for("offer").await;
    assert!(offer.contains(&conversation.to_string()), "{offer}");
    assert!(offer.contains("verified, ada@example.com"), "{offer}");
    agent.type_line(&format!("/accept {conversation}")).await;
    // Typed straight after the accept, as a person in a hurry would.
    agent.type_line("Yes, how can I help?").await;
    eventually("the reply reaching the visitor", async || {
        log_of(app, conversation)
            .await
            .iter()
            .any(|e| matches!(e, EventBody::Message { text: Some(t), .. } if t == "Yes, how can I help?"))
    })
    .await;
    agent
        .type_line(&format!("/end {} resolved", &conversation.to_string()[..8]))
        .await;
    eventually("the end", async || {
        matches!(
            conversation_state(app, conversation).await,
            ConversationState::Ended { wrap_up: Some(w), .. } if w == "resolved"
        )
    })
    .await;
    agent.quit().await;
}
on_both_engines!(the_terminal_agent_answers);

/// Two terminals chat: `switchboard chat` over the guest socket,
/// `switchboard agent` over the agent socket.
async fn two_terminals_chat(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Grace").await;
    let mut agent = Terminal::agent(&app.base, &token).await;
    let deployment = scene.deployment.meta.id.to_string();
    let mut visitor = Terminal::chat(&[&app.base], &deployment).await;
    visitor.type_line("Hello from the terminal").await;

    let offer = agent.wait_for("offer").await;
    let conversation = offer.split_whitespace().nth(1).unwrap().to_owned();
    assert!(offer.contains("guest, not verified"), "{offer}");
    agent.type_line(&format!("/accept {conversation}")).await;
    agent.wait_for("Hello from the terminal").await;
    agent.type_line("Hi! Grace here.").await;
    visitor.wait_for("Hi! Grace here.").await;
    visitor.type_line("Thanks, Grace").await;
    agent.wait_for("Thanks, Grace").await;
    agent
        .type_line(&format!("/end {conversation} resolved"))
        .await;
    visitor.wait_for("ended the conversation").await;
    visitor.quit().await;
    agent.quit().await;
}
on_both_engines!(two_terminals_chat);

/// The README's demonstration: a visitor on node A, an agent on node B,
/// and node A dies with SIGKILL mid-conversation. The visitor's terminal
/// resumes on node B: nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_terminals_on_two_nodes_survive_a_sigkill() {
    use crate::multi_node::{cluster_env, set_up};
    use crate::support::node::Node;

    let redis = crate::support::redis::shared();
    let env = cluster_env(redis);
    let mut a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let (deployment, token) = set_up(&a).await;

    let mut agent = Terminal::agent(&b.base, &token).await;
    let mut visitor = Terminal::chat(&[&a.base, &b.base], &deployment).await;
    visitor.type_line("Hello from node A").await;
    let offer = agent.wait_for("offer").await;
    let conversation = offer.split_whitespace().nth(1).unwrap().to_owned();
    agent.type_line(&format!("/accept {conversation}")).await;
    agent.wait_for("Hello from node A").await;
    agent.type_line("one").await;
    visitor.wait_for("Grace: one").await;

    a.kill9();
    visitor.wait_for("connection lost").await;
    // Said while the visitor is away from any node: replayed on resume.
    agent.type_line("two").await;
    visitor.wait_for("connected").await;
    visitor.wait_for("Grace: two").await;
    visitor.type_line("Back, via node B").await;
    agent.wait_for("Back, via node B").await;
    agent.type_line("three").await;
    visitor.wait_for("Grace: three").await;
    for said in ["Grace: one", "Grace: two", "Grace: three"] {
        let times = visitor.seen.iter().filter(|l| l.contains(said)).count();
        assert_eq!(
            times, 1,
            "{said:?} printed {times} times: {:?}",
            visitor.seen
        );
    }
    visitor.quit().await;
    agent.quit().await;
    drop(b);
}
