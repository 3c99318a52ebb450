//! A tenant's view of the real API: bearer requests that answer (status, JSON body).

use super::{ApiServer, TestDb};
use reqwest::StatusCode;
use serde_json::Value;

pub struct Api {
    pub server: ApiServer,
    pub token: String,
}

impl Api {
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.server
            .http
            .request(method, self.server.url(path))
            .bearer_auth(&self.token)
    }
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.req(reqwest::Method::GET, path)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.req(reqwest::Method::POST, path).json(&body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.req(reqwest::Method::PUT, path).json(&body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.req(reqwest::Method::PATCH, path).json(&body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        send(self.req(reqwest::Method::DELETE, path)).await
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = req.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

pub async fn setup(settings: impl FnOnce(&mut blast::settings::Settings)) -> (TestDb, Api) {
    let db = TestDb::new().await;
    let mut s = db.settings("http://127.0.0.1:9");
    settings(&mut s);
    let user = db.store.user_by_name("tester").await.expect("user");
    let token = db.store.create_token(&user, "test").await.expect("token");
    let server = ApiServer::start(&db.store, s).await;
    (db, Api { server, token })
}

pub async fn second_tenant(db: &TestDb, api: &Api) -> Api {
    let user = db
        .store
        .add_user("intruder", "intruder password")
        .await
        .expect("user");
    let token = db.store.create_token(&user, "t").await.expect("token");
    Api {
        server: api.server.detached(),
        token,
    }
}
