use burrow_protocol::Manifest;
use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::App;
use crate::test_support::{WAIT, start_ready, with_client, within};

fn document() -> Value {
    json!({
        "apps": {"tester": {"greeting": "hi", "n": 1}, "other": {"secret": true}},
        "agents": {"main": {"model": "any"}},
    })
}

fn change(path: &str, old: Value, new: Value) -> ConfigChange {
    ConfigChange { path: path.to_owned(), old_value: old, new_value: new }
}

#[tokio::test]
async fn config_get_reads_the_own_subtree_or_a_path() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    running.kernel.set_config(document());
    let client = within(client).await.unwrap();
    let own = client.config_get(None).await.unwrap();
    assert_eq!(own, json!({"greeting": "hi", "n": 1}));
    let model = client.config_get(Some("agents.main.model")).await.unwrap();
    assert_eq!(model, json!("any"));
    let missing = client.config_get(Some("apps.tester.nope")).await.unwrap();
    assert_eq!(missing, Value::Null);
}

#[tokio::test]
async fn config_watch_streams_changes_and_cancels_when_dropped() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    kernel.set_config(document());
    let client = within(client).await.unwrap();

    let mut watch = client.config_watch(None).await.unwrap();
    within(kernel.wait_config_watches(1, WAIT)).await.unwrap();
    let elsewhere = change("agents.main.model", json!("any"), json!("big"));
    assert_eq!(kernel.push_config_change(elsewhere).await.unwrap(), 0);
    let mine = change("apps.tester.n", json!(1), json!(2));
    assert_eq!(kernel.push_config_change(mine.clone()).await.unwrap(), 1);
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), mine);
    // A change above the watched path is narrowed to it.
    let above = change("apps", Value::Null, json!({}));
    assert_eq!(kernel.push_config_change(above).await.unwrap(), 1);
    let narrowed = change("apps.tester", json!({"greeting": "hi", "n": 2}), Value::Null);
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), narrowed);
    assert_eq!(watch.ended(), None);
    // The changes were applied to the document.
    assert_eq!(client.config_get(None).await.unwrap(), Value::Null);

    drop(watch);
    within(kernel.wait_config_watches(0, WAIT)).await.unwrap();
    running.stop.send(()).unwrap();
    within(running.run).await.unwrap().unwrap();
}

#[tokio::test]
async fn config_watch_ends_when_the_kernel_ends_it() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    let client = within(client).await.unwrap();
    let paths = vec!["agents.main".to_owned(), "apps.tester.greeting".to_owned()];
    let mut watch = client.config_watch(Some(paths)).await.unwrap();
    within(kernel.wait_config_watches(1, WAIT)).await.unwrap();
    let model = change("agents.main.model", Value::Null, json!("m"));
    kernel.push_config_change(model.clone()).await.unwrap();
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), model);

    kernel.shutdown_app().await.unwrap();
    assert!(within(watch.next()).await.is_none());
    assert_eq!(watch.ended(), Some("closed"));
    within(running.run).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_undecodable_chunk_is_an_error_item() {
    let (app, client) = with_client(App::new(Manifest::new("tester", "0.1.0")));
    let running = start_ready(app).await;
    let kernel = &running.kernel;
    let client = within(client).await.unwrap();
    let mut watch = client.config_watch(None).await.unwrap();
    within(kernel.wait_config_watches(1, WAIT)).await.unwrap();
    let id = burrow_protocol::Id::Num(watch.id());
    kernel.client().send_chunk(id, json!({"nonsense": 1})).await.unwrap();
    let bad = within(watch.next()).await.unwrap().unwrap_err();
    assert!(matches!(bad, Error::Protocol(_)), "{bad:?}");
    let fine = change("apps.tester.n", json!(1), json!(3));
    kernel.push_config_change(fine.clone()).await.unwrap();
    assert_eq!(within(watch.next()).await.unwrap().unwrap(), fine);
}
