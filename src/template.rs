//! Message templates: `{{ name }}` and any other client attribute, rendered per recipient.
//!
//! Templates are Jinja (minijinja). A variable the client does not have is an error, not an
//! empty string: a message that says "Hello, !" is worse than one not sent.

use crate::domain::{InvalidInput, invalid};
use crate::store::Client;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use std::collections::BTreeMap;

/// A compiled message text.
#[derive(Debug)]
pub struct MessageTemplate {
    env: Environment<'static>,
    /// A text sent as it is (a notification's: its caller's words, never a template).
    literal: Option<String>,
}

const NAME: &str = "message";

impl MessageTemplate {
    pub fn compile(source: &str) -> Result<MessageTemplate, InvalidInput> {
        MessageTemplate::compile_as(source, AutoEscape::None)
    }

    /// An HTML body: every value is escaped, so a client named `Tom & <Jerry>` cannot break
    /// the markup or inject a link.
    pub fn compile_html(source: &str) -> Result<MessageTemplate, InvalidInput> {
        MessageTemplate::compile_as(source, AutoEscape::Html)
    }

    fn compile_as(source: &str, escape: AutoEscape) -> Result<MessageTemplate, InvalidInput> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(move |_| escape);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| invalid(format!("invalid message template: {e}")))?;
        Ok(MessageTemplate { env, literal: None })
    }

    /// A text that is not a template: `{{` in it is sent as written.
    pub fn literal(text: &str) -> MessageTemplate {
        MessageTemplate {
            env: Environment::new(),
            literal: Some(text.to_owned()),
        }
    }

    /// The text for one client. Errors name the variable that is missing.
    pub fn render(&self, client: &Client) -> Result<String, InvalidInput> {
        self.render_with(client, &[])
    }

    /// The text for one client, with `extra` variables beside the client's (an email's
    /// `unsubscribe_url`); they take precedence over attributes of the same name.
    pub fn render_with(
        &self,
        client: &Client,
        extra: &[(&'static str, &str)],
    ) -> Result<String, InvalidInput> {
        if let Some(text) = &self.literal {
            return Ok(text.clone());
        }
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| invalid(format!("template: {e}")))?;
        template.render(client_context(client, extra)).map_err(|e| {
            invalid(format!(
                "cannot render the message for client {}: {e}",
                client.id
            ))
        })
    }
}

/// The variables a template sees: the client's own fields, then its free-form attributes
/// (which cannot shadow the fields).
fn client_context(client: &Client, extra: &[(&'static str, &str)]) -> Value {
    let mut vars: BTreeMap<&str, Value> = client
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
        .collect();
    vars.insert("id", Value::from(client.id));
    if let Some(phone) = &client.phone {
        vars.insert("phone", Value::from(phone.as_str()));
    }
    vars.insert("operator_code", Value::from(client.operator_code.as_str()));
    vars.insert("name", Value::from(client.name.as_str()));
    vars.insert("timezone", Value::from(client.timezone.as_str()));
    vars.insert("tags", Value::from(client.tags.clone()));
    if let Some(email) = &client.email {
        vars.insert("email", Value::from(email.as_str()));
    }
    for (name, value) in extra {
        vars.insert(name, Value::from(*value));
    }
    Value::from_serialize(&vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            id: 5,
            phone: Some("79001234567".into()),
            operator_code: "900".into(),
            name: "Anna".into(),
            email: None,
            telegram_chat_id: None,
            timezone: "Europe/Moscow".into(),
            tags: vec!["vip".into()],
            attributes: [("city".to_owned(), "Kazan".to_owned())].into(),
        }
    }

    #[test]
    fn renders_fields_and_attributes() {
        let t =
            MessageTemplate::compile("Hi {{ name }} from {{ city }} ({{ phone }})").expect("ok");
        assert_eq!(
            t.render(&client()).expect("renders"),
            "Hi Anna from Kazan (79001234567)"
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_that_names_it() {
        let t = MessageTemplate::compile("Hi {{ nickname }}").expect("compiles");
        let err = t.render(&client()).expect_err("undefined");
        assert!(
            err.0.contains("nickname") || err.0.contains("undefined"),
            "{err}"
        );
    }

    #[test]
    fn html_bodies_escape_values_and_texts_do_not() {
        let mut c = client();
        c.name = "Tom & <Jerry>".into();
        let html = MessageTemplate::compile_html("<p>Hi {{ name }}</p>").expect("ok");
        assert_eq!(
            html.render(&c).expect("renders"),
            "<p>Hi Tom &amp; &lt;Jerry&gt;</p>"
        );
        let text = MessageTemplate::compile("Hi {{ name }}").expect("ok");
        assert_eq!(text.render(&c).expect("renders"), "Hi Tom & <Jerry>");
    }

    #[test]
    fn bad_syntax_is_reported_at_compile_time() {
        assert!(MessageTemplate::compile("Hi {{ name ").is_err());
    }
}
