//! Message templates: `{{ name }}` and any other client attribute, rendered per recipient.
//!
//! Templates are Jinja (minijinja), written by tenants, so they are bounded: a template is
//! accepted only in a subset of the language that cannot grow a value beyond the size of its
//! inputs (no `set`, `with`, macros, includes, `*`, `~` or `+`; only the filters listed in
//! [`add_filters`], `join` and `replace` with a bound), every render runs on a fuel budget
//! (instructions), and its output may not exceed the channel's text limit. A variable the
//! client does not have is an error, not an empty string: a message that says "Hello, !" is
//! worse than one not sent.

use crate::domain::Client;
use crate::domain::{InvalidInput, invalid};
use minijinja::machinery::{Token, WhitespaceConfig, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// How far one render of a template may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// The longest rendered text, in characters (the channel's text limit).
    pub max_chars: usize,
    /// Instructions one render may execute (`mailing.template_fuel`).
    pub fuel: u64,
    /// Wall-clock time one render may take off the async runtime
    /// (`mailing.template_timeout_ms`).
    pub timeout: Duration,
}

/// `mailing.template_fuel` unless configured.
pub const DEFAULT_FUEL: u64 = 100_000;
/// `mailing.template_timeout_ms` unless configured.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

impl TextLimits {
    /// `max_chars` with the default fuel and time limit.
    pub fn with_default_budget(max_chars: usize) -> TextLimits {
        TextLimits {
            max_chars,
            fuel: DEFAULT_FUEL,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }

    /// The same limits with another length (an email subject's, say).
    pub fn with_max_chars(self, max_chars: usize) -> TextLimits {
        TextLimits { max_chars, ..self }
    }

    /// The byte budget of the output buffer: a character is at most four bytes.
    fn max_bytes(self) -> usize {
        self.max_chars.saturating_mul(4)
    }
}

/// A compiled message text.
#[derive(Debug)]
pub struct MessageTemplate {
    env: Environment<'static>,
    /// A text sent as it is (a notification's: its caller's words, never a template).
    literal: Option<String>,
    limits: TextLimits,
    shape: Shape,
}

const NAME: &str = "message";

/// Statements a message template may use. The others either bind names (`set`, `with`,
/// `macro`, `call`, `filter`), which lets a template double a value as often as it likes,
/// or read other templates.
const ALLOWED_STATEMENTS: &[&str] = &[
    "if", "elif", "else", "endif", "for", "endfor", "break", "continue",
];

impl MessageTemplate {
    pub fn compile(source: &str, limits: TextLimits) -> Result<MessageTemplate, InvalidInput> {
        MessageTemplate::compile_as(source, AutoEscape::None, UndefinedBehavior::Strict, limits)
    }

    /// An HTML body: every value is escaped, so a client named `Tom & <Jerry>` cannot break
    /// the markup or inject a link.
    pub fn compile_html(source: &str, limits: TextLimits) -> Result<MessageTemplate, InvalidInput> {
        MessageTemplate::compile_as(source, AutoEscape::Html, UndefinedBehavior::Strict, limits)
    }

    fn compile_as(
        source: &str,
        escape: AutoEscape,
        undefined: UndefinedBehavior,
        limits: TextLimits,
    ) -> Result<MessageTemplate, InvalidInput> {
        let shape = check_language(source)?;
        let mut env = Environment::empty();
        env.set_undefined_behavior(undefined);
        env.set_auto_escape_callback(move |_| escape);
        env.set_fuel(Some(limits.fuel));
        add_filters(&mut env, limits.max_bytes());
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| invalid(format!("invalid message template: {e}")))?;
        Ok(MessageTemplate {
            env,
            literal: None,
            limits,
            shape,
        })
    }

    /// A text that is not a template: `{{` in it is sent as written.
    pub fn literal(text: &str) -> MessageTemplate {
        MessageTemplate {
            env: Environment::empty(),
            literal: Some(text.to_owned()),
            limits: TextLimits {
                max_chars: usize::MAX,
                fuel: 0,
                timeout: Duration::ZERO,
            },
            shape: Shape::Plain,
        }
    }

    /// Whether a render is cheap whatever the client (a literal text, or text and plain
    /// variables only), so that it may run in place instead of off the runtime.
    pub fn renders_in_place(&self) -> bool {
        self.shape == Shape::Plain
    }

    /// Check, when a mailing is created, that `source` compiles and that a render for a
    /// sample client stays within `limits`. The render runs off the async runtime under the
    /// time limit; variables the sample does not have render empty here (they are checked
    /// per recipient at send time).
    pub async fn check(source: &str, html: bool, limits: TextLimits) -> Result<(), InvalidInput> {
        let escape = if html {
            AutoEscape::Html
        } else {
            AutoEscape::None
        };
        // Whether a template compiles does not depend on how undefined values behave: one
        // compile checks it and renders the sample.
        let sample =
            MessageTemplate::compile_as(source, escape, UndefinedBehavior::Lenient, limits)?;
        let client = sample_client();
        sample
            .render_off_runtime(client, Vec::new())
            .await
            .map(drop)
    }

    /// The variables `source` reads that are neither client fields nor blast's own
    /// (`unsubscribe_url`): the attributes it needs. A variable the template itself guards
    /// (`x is defined`, `x | default(…)`) is left out: a client without it is expected.
    pub fn attribute_variables(source: &str) -> Result<Vec<String>, InvalidInput> {
        let limits = TextLimits {
            max_chars: usize::MAX,
            fuel: 0,
            timeout: Duration::ZERO,
        };
        let compiled = MessageTemplate::compile_as(
            source,
            AutoEscape::None,
            UndefinedBehavior::Lenient,
            limits,
        )?;
        let template = compiled
            .env
            .get_template(NAME)
            .map_err(|e| invalid(format!("template: {e}")))?;
        let mut names: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| {
                !CLIENT_FIELDS.contains(&name.as_str())
                    && !BLAST_VARIABLES.contains(&name.as_str())
                    && !is_guarded(source, name)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// The text for one client. Errors name the variable that is missing.
    pub fn render(&self, client: &Client) -> Result<String, InvalidInput> {
        self.render_with(client, &[])
    }

    /// [`MessageTemplate::render_with`] on a blocking thread, given up after the time limit
    /// (the thread itself stops when its fuel runs out).
    pub async fn render_off_runtime(
        self,
        client: Client,
        extra: Vec<(&'static str, String)>,
    ) -> Result<String, InvalidInput> {
        let timeout = self.limits.timeout;
        off_runtime(timeout, move || {
            let extra: Vec<(&'static str, &str)> =
                extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.render_with(&client, &extra)
        })
        .await
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
        let max_bytes = self.limits.max_bytes();
        let mut out = BoundedBuffer {
            bytes: Vec::new(),
            max_bytes,
        };
        let context = client_context(client, extra);
        if let Err(e) = template.render_captured_to(&context, &mut out) {
            return Err(invalid(self.explain(e, &template, &context)));
        }
        let text = String::from_utf8(out.bytes)
            .map_err(|_| invalid("the message template rendered invalid UTF-8"))?;
        let chars = text.chars().count();
        if chars > self.limits.max_chars {
            return Err(too_long(self.limits.max_chars));
        }
        Ok(text)
    }

    /// A render error in the words of the person who wrote the template.
    fn explain(&self, e: Error, template: &minijinja::Template<'_, '_>, context: &Value) -> String {
        match e.kind() {
            ErrorKind::WriteFailure => too_long(self.limits.max_chars).0,
            ErrorKind::OutOfFuel => format!(
                "the message template does too much work (more than {} steps per message)",
                self.limits.fuel
            ),
            ErrorKind::UndefinedError => {
                let missing: Vec<String> = template
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|name| {
                        context
                            .get_attr(name)
                            .map(|v| v.is_undefined())
                            .unwrap_or(true)
                    })
                    .collect();
                if missing.is_empty() {
                    format!("cannot render the message: {e}")
                } else {
                    // No client id here: the message row names the client, and the daily
                    // report counts errors by their text.
                    format!(
                        "the message uses {}, which this client does not have",
                        missing.join(", ")
                    )
                }
            }
            _ => format!("cannot render the message: {e}"),
        }
    }
}

/// Run `render` on the blocking pool and give up waiting after `timeout` (the thread itself
/// stops when its fuel runs out): a tenant's template never holds up the async runtime.
pub async fn off_runtime<T: Send + 'static>(
    timeout: Duration,
    render: impl FnOnce() -> Result<T, InvalidInput> + Send + 'static,
) -> Result<T, InvalidInput> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(render)).await {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(_)) => Err(invalid("the message template could not be rendered")),
        Err(_) => Err(invalid(format!(
            "the message template took longer than {} ms to render",
            timeout.as_millis()
        ))),
    }
}

/// The client a template is tried on when a mailing is created.
fn sample_client() -> Client {
    Client {
        id: crate::ids::ClientId(1),
        phone: Some("79001234567".into()),
        operator_code: "900".into(),
        name: "Sample Client".into(),
        email: Some("client@example.com".into()),
        telegram_chat_id: Some(1),
        timezone: "UTC".into(),
        tags: vec!["sample".into()],
        attributes: BTreeMap::new(),
    }
}

fn too_long(max_chars: usize) -> InvalidInput {
    invalid(format!(
        "the rendered message is longer than the channel's limit of {max_chars} characters"
    ))
}

/// The output of one render, refusing to grow past the limit (the render then stops with a
/// write failure instead of filling memory).
struct BoundedBuffer {
    bytes: Vec<u8>,
    max_bytes: usize,
}

impl std::io::Write for BoundedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.max_bytes {
            return Err(std::io::Error::other("the rendered message is too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuse the parts of Jinja a message does not need and that let a template grow a value
/// without bound: statements that bind names, other templates, `*` / `**` (a string times a
/// number) and `~` / `+` (joining strings: a `for` over `[a ~ a]`, nested, doubles a value at
/// each level). Without them every value is an input, a literal of the source, or the result
/// of a filter that checks its size.
// SyntaxConfig is a unit struct unless minijinja's `custom_syntax` feature is on.
#[allow(clippy::default_constructed_unit_structs)]
fn check_language(source: &str) -> Result<Shape, InvalidInput> {
    let mut after_block_start = false;
    // Plain means every `{{ }}` holds one name path: `{{ a }}` or `{{ a.b }}` and nothing
    // else (`{{ a in b }}`, `{{ a if b }}` and `{{ not a }}` lex as names too).
    let mut plain = source.len() <= PLAIN_MAX_BYTES;
    let mut path = Path::Outside;
    for token in tokenize(
        source,
        false,
        SyntaxConfig::default(),
        WhitespaceConfig::default(),
    ) {
        let (token, _) = token.map_err(|e| invalid(format!("invalid message template: {e}")))?;
        match token {
            Token::Mul | Token::Pow | Token::Tilde | Token::Plus => {
                return Err(invalid(
                    "message templates cannot multiply or join values (`*`, `**`, `~` and `+` are not allowed; write `{{ a }}{{ b }}`)",
                ));
            }
            Token::Ident(word) if after_block_start && !ALLOWED_STATEMENTS.contains(&word) => {
                return Err(invalid(format!(
                    "message templates cannot use `{{% {word} %}}` (allowed: if, elif, else, for, break, continue)"
                )));
            }
            _ => {}
        }
        path = match (path, &token) {
            (Path::Outside, Token::TemplateData(_)) => Path::Outside,
            (Path::Outside, Token::VariableStart) => Path::Start,
            (Path::Start | Path::Dot, Token::Ident(_)) => Path::Name,
            (Path::Name, Token::Dot) => Path::Dot,
            (Path::Name, Token::VariableEnd) => Path::Outside,
            _ => {
                plain = false;
                Path::Outside
            }
        };
        after_block_start = matches!(token, Token::BlockStart);
    }
    Ok(if plain { Shape::Plain } else { Shape::Program })
}

/// Where the plain-template check is within a `{{ }}`.
#[derive(Clone, Copy)]
enum Path {
    Outside,
    Start,
    Name,
    Dot,
}

/// The longest template rendered in place: a render, and the error report of a failed one
/// (which parses the source again), stay a matter of microseconds. SMS and Telegram texts fit;
/// a long email body renders off the runtime.
const PLAIN_MAX_BYTES: usize = 8 * 1024;

/// What a template's source does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Text and `{{ name }}` / `{{ a.b }}` only: no statement, filter, call, operator or
    /// literal, so a render costs a few lookups and copies of bounded values, whatever the
    /// client. Rendered in place, where a thread hop would cost more than the render.
    Plain,
    /// Anything else: rendered off the runtime under the time limit.
    Program,
}

/// The filters, tests and functions a message template may call: none of them makes its
/// output more than a bounded factor larger than its input, and `join` and `replace` check
/// their result against the output limit (chained, they could otherwise grow it
/// exponentially).
fn add_filters(env: &mut Environment<'static>, max_bytes: usize) {
    use minijinja::{filters as f, functions, tests as t};
    env.add_filter("upper", f::upper);
    env.add_filter("lower", f::lower);
    env.add_filter("title", f::title);
    env.add_filter("capitalize", f::capitalize);
    env.add_filter("trim", f::trim);
    env.add_filter("default", f::default);
    env.add_filter("d", f::default);
    env.add_filter("length", f::length);
    env.add_filter("count", f::length);
    env.add_filter("first", f::first);
    env.add_filter("last", f::last);
    env.add_filter("round", f::round);
    env.add_filter("abs", f::abs);
    env.add_filter("int", f::int);
    env.add_filter("float", f::float);
    env.add_filter("min", f::min);
    env.add_filter("max", f::max);
    env.add_filter("sort", f::sort);
    env.add_filter("reverse", f::reverse);
    env.add_filter("unique", f::unique);
    env.add_filter("select", f::select);
    env.add_filter("reject", f::reject);
    env.add_filter("join", move |value: Value, joiner: Option<String>| {
        bounded_join(&value, joiner.as_deref().unwrap_or(""), max_bytes)
    });
    env.add_filter("replace", move |value: String, from: String, to: String| {
        bounded_replace(&value, &from, &to, max_bytes)
    });
    env.add_test("defined", t::is_defined);
    env.add_test("undefined", t::is_undefined);
    env.add_test("none", t::is_none);
    env.add_test("number", t::is_number);
    env.add_test("string", t::is_string);
    env.add_test("odd", t::is_odd);
    env.add_test("even", t::is_even);
    env.add_test("in", t::is_in);
    env.add_test("true", t::is_true);
    env.add_test("false", t::is_false);
    env.add_test("startingwith", t::is_startingwith);
    env.add_test("endingwith", t::is_endingwith);
    env.add_function("range", functions::range);
}

fn output_too_large() -> Error {
    Error::new(ErrorKind::WriteFailure, "the rendered message is too long")
}

fn bounded_join(value: &Value, joiner: &str, max_bytes: usize) -> Result<String, Error> {
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(joiner);
        }
        out.push_str(&item.to_string());
        if out.len() > max_bytes {
            return Err(output_too_large());
        }
    }
    Ok(out)
}

fn bounded_replace(value: &str, from: &str, to: &str, max_bytes: usize) -> Result<String, Error> {
    if from.is_empty() {
        return Ok(value.to_owned());
    }
    let grows_by = to.len().saturating_sub(from.len());
    let grown = value
        .matches(from)
        .count()
        .saturating_mul(grows_by)
        .saturating_add(value.len());
    if grown > max_bytes {
        return Err(output_too_large());
    }
    Ok(value.replace(from, to))
}

/// The variables every client has (`client_context` sets them); any other is an attribute.
pub const CLIENT_FIELDS: &[&str] = &[
    "id",
    "phone",
    "operator_code",
    "name",
    "timezone",
    "tags",
    "email",
];

/// Variables blast itself sets for some channels (an email's unsubscribe link).
const BLAST_VARIABLES: &[&str] = &["unsubscribe_url"];

/// Whether `source` tests `name` for presence or gives it a default, so that a client
/// without it is part of the plan.
fn is_guarded(source: &str, name: &str) -> bool {
    let mut rest = source;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        let standalone = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            && !after
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !standalone {
            continue;
        }
        let tail = after.trim_start();
        let test = tail
            .strip_prefix("is")
            .map(|t| t.trim_start())
            .map(|t| t.strip_prefix("not").map(str::trim_start).unwrap_or(t));
        if test.is_some_and(|t| t.starts_with("defined") || t.starts_with("undefined")) {
            return true;
        }
        if tail
            .strip_prefix('|')
            .is_some_and(|t| t.trim_start().starts_with("default"))
        {
            return true;
        }
    }
    false
}

/// The variables a template sees: the client's own fields, then its free-form attributes
/// (which cannot shadow the fields).
fn client_context(client: &Client, extra: &[(&'static str, &str)]) -> Value {
    let mut vars: BTreeMap<&str, Value> = client
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
        .collect();
    vars.insert("id", Value::from(client.id.0));
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

    #[test]
    fn only_text_and_plain_variables_render_in_place() {
        let limits = TextLimits::with_default_budget(1000);
        let in_place = |source: &str| {
            MessageTemplate::compile(source, limits)
                .expect("compiles")
                .renders_in_place()
        };
        assert!(in_place("Hello {{ name }}, your code is {{ id }}"));
        assert!(in_place("{{- attributes.city -}} only"));
        assert!(in_place("no variables at all"));
        assert!(MessageTemplate::literal("{% for %}").renders_in_place());
        for program in [
            "{% for t in tags %}{{ t }}{% endfor %}",
            "{% if name %}x{% endif %}",
            "{{ name | upper }}",
            "{{ name[0] }}",
            "{{ range(10) }}",
            "{{ \"x\" }}",
            "{{ 1 }}",
            "{{ name == 'a' }}",
            "{{ a in b }}",
            "{{ a if b else c }}",
            "{{ a is defined }}",
            "{{ not a }}",
        ] {
            assert!(!in_place(program), "{program}");
        }
        let long = format!("{} {{{{ name }}}}", "x".repeat(PLAIN_MAX_BYTES));
        assert!(!in_place(&long), "a long template renders off the runtime");
    }

    #[test]
    fn the_attributes_a_template_needs_are_its_unguarded_unknown_variables() {
        let needs = |source: &str| MessageTemplate::attribute_variables(source).expect("compiles");
        assert_eq!(needs("Hi {{ name }} from {{ city }}"), ["city"]);
        assert_eq!(
            needs("{% for t in tags %}{{ t }}{% endfor %} {{ unsubscribe_url }} {{ id }}"),
            Vec::<String>::new()
        );
        assert_eq!(
            needs("{% if city is defined %}{{ city }}{% endif %}"),
            Vec::<String>::new()
        );
        assert_eq!(needs("{{ city | default('nowhere') }} {{ zip }}"), ["zip"]);
        assert_eq!(needs("{{ nickname }} {{ nick }}"), ["nick", "nickname"]);
        assert!(MessageTemplate::attribute_variables("{{ broken").is_err());
    }

    fn client() -> Client {
        Client {
            id: crate::ids::ClientId(5),
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

    fn limits() -> TextLimits {
        TextLimits {
            max_chars: 1000,
            fuel: 100_000,
            timeout: Duration::from_secs(1),
        }
    }

    fn compile(source: &str) -> Result<MessageTemplate, InvalidInput> {
        MessageTemplate::compile(source, limits())
    }

    #[test]
    fn renders_fields_and_attributes() {
        let t = compile("Hi {{ name }} from {{ city }} ({{ phone }})").expect("ok");
        assert_eq!(
            t.render(&client()).expect("renders"),
            "Hi Anna from Kazan (79001234567)"
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_that_names_it() {
        let t = compile("Hi {{ nickname }}").expect("compiles");
        let err = t.render(&client()).expect_err("undefined");
        assert!(err.0.contains("nickname"), "{err}");
    }

    #[test]
    fn html_bodies_escape_values_and_texts_do_not() {
        let mut c = client();
        c.name = "Tom & <Jerry>".into();
        let html = MessageTemplate::compile_html("<p>Hi {{ name }}</p>", limits()).expect("ok");
        assert_eq!(
            html.render(&c).expect("renders"),
            "<p>Hi Tom &amp; &lt;Jerry&gt;</p>"
        );
        let text = compile("Hi {{ name }}").expect("ok");
        assert_eq!(text.render(&c).expect("renders"), "Hi Tom & <Jerry>");
    }

    #[test]
    fn bad_syntax_is_reported_at_compile_time() {
        assert!(compile("Hi {{ name ").is_err());
    }

    #[test]
    fn loops_conditions_and_the_allowed_filters_work() {
        let t = compile(
            "{% for t in tags %}{{ t|upper }}{% endfor %} {{ tags|join(', ') }} {{ name|replace('A', 'E') }}{% if city is defined %} {{ city|lower }}{% endif %}",
        )
        .expect("ok");
        assert_eq!(t.render(&client()).expect("renders"), "VIP vip Enna kazan");
    }

    #[test]
    fn statements_that_bind_names_and_multiplication_are_refused() {
        for source in [
            "{% set a = name %}{{ a }}",
            "{% with a = name %}{{ a }}{% endwith %}",
            "{% macro m() %}x{% endmacro %}",
            "{% include 'x' %}",
            "{% filter upper %}x{% endfilter %}",
            "{{ 'x' * 99999999 }}",
            "{{ 2 ** 64 }}",
            "{% for a in [name ~ name] %}{% for b in [a ~ a] %}{{ b }}{% endfor %}{% endfor %}",
            "{{ name + name }}",
        ] {
            assert!(compile(source).is_err(), "{source} was accepted");
        }
    }

    #[test]
    fn a_template_that_loops_forever_runs_out_of_fuel() {
        let t = compile(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}{% endfor %}",
        )
        .expect("compiles");
        let err = t.render(&client()).expect_err("out of fuel");
        assert!(err.0.contains("too much work"), "{err}");
    }

    #[test]
    fn the_rendered_text_is_held_to_the_channel_limit() {
        let t = compile("{% for a in range(10000) %}xxxxxxxxxx{% endfor %}").expect("compiles");
        let err = t.render(&client()).expect_err("too long");
        assert!(err.0.contains("limit of 1000 characters"), "{err}");
        let chained = compile(
            "{{ name|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa') }}",
        )
        .expect("compiles");
        let err = chained.render(&client()).expect_err("too long");
        assert!(err.0.contains("limit"), "{err}");
        let joined = compile("{{ range(10000)|join('-') }}").expect("compiles");
        assert!(joined.render(&client()).is_err());
    }

    #[tokio::test]
    async fn the_create_time_check_renders_a_sample_off_the_runtime() {
        MessageTemplate::check("Hi {{ nickname }} {{ name }}", false, limits())
            .await
            .expect("unknown attributes are checked per recipient");
        let err = MessageTemplate::check(
            "{% for a in range(10000) %}{% for b in range(10000) %}{{ a }}{% endfor %}{% endfor %}",
            false,
            limits(),
        )
        .await
        .expect_err("too long or too much work");
        assert!(
            err.0.contains("limit") || err.0.contains("too much work"),
            "{err}"
        );
    }
}
