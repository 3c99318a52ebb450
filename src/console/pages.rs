//! The console's pages: minijinja templates kept in the binary, HTML-escaped.

use crate::store::{ConsoleSession, Mailing};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};

pub(super) struct Pages {
    templates: Environment<'static>,
}

impl Pages {
    pub(super) fn new() -> Pages {
        let mut templates = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("sign_in.html", include_str!("templates/sign_in.html")),
            ("dashboard.html", include_str!("templates/dashboard.html")),
            ("refused.html", include_str!("templates/refused.html")),
        ] {
            // The templates are part of the binary: one that does not parse fails every
            // console test, so it cannot ship.
            if let Err(e) = templates.add_template(name, source) {
                tracing::error!(error = %e, template = name, "a console template does not parse");
            }
        }
        Pages { templates }
    }

    fn render(
        &self,
        name: &str,
        values: minijinja::Value,
    ) -> Result<Html<String>, minijinja::Error> {
        Ok(Html(self.templates.get_template(name)?.render(values)?))
    }

    pub(super) fn sign_in(
        &self,
        username: &str,
        error: Option<&str>,
    ) -> Result<Html<String>, minijinja::Error> {
        self.render(
            "sign_in.html",
            context! { title => "Sign in", username => username, error => error },
        )
    }

    pub(super) fn dashboard(
        &self,
        session: &ConsoleSession,
        mailings: &[Mailing],
    ) -> Result<Html<String>, minijinja::Error> {
        let rows: Vec<minijinja::Value> = mailings
            .iter()
            .map(|m| {
                context! {
                    id => m.id.0,
                    channel => m.channel.as_str(),
                    state => m.state.as_str(),
                    recipients => m.recipients,
                }
            })
            .collect();
        self.render(
            "dashboard.html",
            context! {
                title => "Mailings",
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
                mailings => rows,
            },
        )
    }

    /// A state-changing form without its session's CSRF token: refused (403).
    pub(super) fn csrf_refused(
        &self,
        session: &ConsoleSession,
    ) -> Result<Response, minijinja::Error> {
        let page = self.render(
            "refused.html",
            context! {
                title => "Refused",
                message => "This form did not come from this session's page. Reload the page and try again.",
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
            },
        )?;
        Ok((StatusCode::FORBIDDEN, page).into_response())
    }
}
