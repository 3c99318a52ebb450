//! The console's pages: minijinja templates kept in the binary, HTML-escaped.

use super::actions::Action;
use super::activity::Activity;
use crate::app::progress::BoardRow;
use crate::domain::{ChannelKind, MailingState};
use crate::store::{ConsoleSession, Mailing, MailingFilter, MessageRow, StateCounts};
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
            ("activity.html", include_str!("templates/activity.html")),
            ("refused.html", include_str!("templates/refused.html")),
            ("mailing.html", include_str!("templates/mailing.html")),
            ("confirm.html", include_str!("templates/confirm.html")),
            (
                "mailing_table.html",
                include_str!("templates/mailing_table.html"),
            ),
            ("mailings.html", include_str!("templates/mailings.html")),
            ("tokens.html", include_str!("templates/tokens.html")),
            ("webhooks.html", include_str!("templates/webhooks.html")),
            ("webhook.html", include_str!("templates/webhook.html")),
            ("bots.html", include_str!("templates/bots.html")),
            (
                "mailing_form.html",
                include_str!("templates/mailing_form.html"),
            ),
            ("stats.html", include_str!("templates/stats.html")),
            ("clients.html", include_str!("templates/clients.html")),
            ("import.html", include_str!("templates/import.html")),
            ("client.html", include_str!("templates/client.html")),
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
        token: &str,
        error: Option<&str>,
    ) -> Result<Html<String>, minijinja::Error> {
        self.render(
            "sign_in.html",
            context! { title => "Sign in", username => username, token => token, error => error },
        )
    }

    /// The dashboard; without an activity yet, a placeholder its script fills in.
    pub(super) fn dashboard(
        &self,
        session: &ConsoleSession,
        board: &[BoardRow],
        mailings: &[Mailing],
        activity: Option<&Activity>,
    ) -> Result<Html<String>, minijinja::Error> {
        let rows = mailing_rows(mailings);
        let board: Vec<minijinja::Value> = board
            .iter()
            .map(|r| {
                let (finished, total) = (r.progress.counts.finished(), r.progress.counts.total());
                context! {
                    id => r.progress.mailing_id.0,
                    channel => r.channel.as_str(),
                    state => r.progress.state.as_str(),
                    finished => finished,
                    total => total,
                    percent => percent(finished, total),
                }
            })
            .collect();
        self.render(
            "dashboard.html",
            context! {
                title => "Dashboard",
                board => board,
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
                mailings => rows,
                empty => "No mailings yet: blast mailing create makes one.",
                activity => activity.map(Activity::view),
            },
        )
    }

    /// The dashboard's activity alone, for the page's script to put in place.
    pub(super) fn activity(&self, activity: &Activity) -> Result<Html<String>, minijinja::Error> {
        self.render("activity.html", context! { activity => activity.view() })
    }

    /// The tenant's mailings, newest first, filtered by state and channel, a page at a time.
    pub(super) fn mailings(
        &self,
        session: &ConsoleSession,
        mailings: &[Mailing],
        filter: MailingFilter,
        next: Option<&str>,
    ) -> Result<Html<String>, minijinja::Error> {
        self.render(
            "mailings.html",
            context! {
                title => "Mailings",
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
                mailings => mailing_rows(mailings),
                empty => "No mailing matches.",
                states => MailingState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                channels => ChannelKind::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                state => filter.state.map(|s| s.as_str()),
                channel => filter.channel.map(|c| c.as_str()),
                next => next,
            },
        )
    }

    /// A plain page of `title` and `message`, answered with `status`.
    pub(super) fn notice(
        &self,
        session: &ConsoleSession,
        status: StatusCode,
        title: &str,
        message: &str,
    ) -> Result<Response, minijinja::Error> {
        let page = self.render(
            "refused.html",
            context! {
                title => title,
                message => message,
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
            },
        )?;
        Ok((status, page).into_response())
    }

    /// The page of one mailing: its facts, counts per state, actions and one page of messages.
    pub(super) fn mailing(
        &self,
        session: &ConsoleSession,
        view: &MailingPage<'_>,
    ) -> Result<Html<String>, minijinja::Error> {
        let m = view.mailing;
        let total = view.counts.total();
        let finished = view.counts.finished();
        let percent = percent(finished, total);
        let audience = if m.filter.tags.is_empty() && m.filter.operator_codes.is_empty() {
            "every client".to_owned()
        } else {
            let mut parts = Vec::new();
            if !m.filter.tags.is_empty() {
                parts.push(format!("tags {}", m.filter.tags.join(", ")));
            }
            if !m.filter.operator_codes.is_empty() {
                parts.push(format!("operators {}", m.filter.operator_codes.join(", ")));
            }
            parts.join("; ")
        };
        let counts: Vec<minijinja::Value> = view
            .counts
            .0
            .iter()
            .map(|(state, count)| context! { state => state.as_str(), count => count })
            .collect();
        // Every action is on the page; the script shows those that apply as the state moves.
        let actions: Vec<minijinja::Value> = Action::ALL
            .iter()
            .map(|a| {
                let states: Vec<&str> = MailingState::ALL
                    .iter()
                    .filter(|s| a.applies_to(**s))
                    .map(|s| s.as_str())
                    .collect();
                context! {
                    path => a.path(),
                    label => a.label(),
                    now => a.applies_to(m.state),
                    states => states.join(" "),
                }
            })
            .collect();
        let messages: Vec<minijinja::Value> = view
            .messages
            .iter()
            .map(|r| {
                context! {
                    id => r.id.0,
                    phone => r.phone.as_str(),
                    state => r.state.as_str(),
                    attempts => r.attempts,
                    last_error => r.last_error.as_deref().unwrap_or(""),
                }
            })
            .collect();
        self.render(
            "mailing.html",
            context! {
                title => format!("Mailing #{}", m.id),
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
                m => context! {
                    id => m.id.0,
                    state => m.state.as_str(),
                    channel => m.channel.as_str(),
                    text => m.text.as_str(),
                    audience => audience,
                    start => time(m.start_at),
                    end => time(m.end_at),
                    total => total,
                    finished => finished,
                    percent => percent,
                },
                counts => counts,
                actions => actions,
                messages => messages,
                filter => view.filter,
                next => view.next.as_deref(),
            },
        )
    }

    /// The confirmation an action asks for before it is taken.
    pub(super) fn confirm(
        &self,
        session: &ConsoleSession,
        mailing: &Mailing,
        action: Action,
    ) -> Result<Html<String>, minijinja::Error> {
        self.confirm_at(
            session,
            &Confirmation {
                title: &format!("{} mailing #{}", action.label(), mailing.id),
                question: action.question(),
                label: action.label(),
                action: &format!("/mailings/{}/{}", mailing.id, action.path()),
                back: &format!("/mailings/{}", mailing.id),
            },
        )
    }

    /// The mailing form, new or an edit.
    pub(super) fn mailing_form(
        &self,
        session: &ConsoleSession,
        view: &Form<'_>,
        bots: &[String],
    ) -> Result<Html<String>, minijinja::Error> {
        let (title, action) = match view.editing {
            Some(id) => (
                format!("Edit mailing #{id}"),
                format!("/mailings/{id}/edit"),
            ),
            None => ("New mailing".to_owned(), "/mailings/new".to_owned()),
        };
        let kinds = [
            "text",
            "photo",
            "video",
            "voice",
            "video_note",
            "animation",
            "document",
            "media_group",
        ];
        self.page(
            session,
            "mailing_form.html",
            context! {
                title => title,
                action => action,
                editing => view.editing,
                f => minijinja::Value::from_serialize(view.form),
                error => view.error.map(|e| e.0.as_str()),
                error_field => view.error.and_then(|e| e.field()),
                channels => ChannelKind::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                priorities => ["high", "medium", "low"],
                kinds => kinds,
                bots => bots,
                window_hours => view.window_hours,
            },
        )
    }

    /// A confirmation: its question, and a form that posts to its action.
    pub(super) fn confirm_at(
        &self,
        session: &ConsoleSession,
        asked: &Confirmation<'_>,
    ) -> Result<Html<String>, minijinja::Error> {
        self.page(
            session,
            "confirm.html",
            context! {
                title => asked.title,
                question => asked.question,
                label => asked.label,
                action => asked.action,
                back => asked.back,
            },
        )
    }

    /// Page `name` for a signed-in operator: `values` and what every such page shows (the
    /// user, the sign-out form's CSRF token).
    pub(super) fn page(
        &self,
        session: &ConsoleSession,
        name: &str,
        values: minijinja::Value,
    ) -> Result<Html<String>, minijinja::Error> {
        self.render(
            name,
            context! {
                user => session.user.name.as_str(),
                csrf => session.csrf.as_str(),
                ..values
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

/// What the mailing form shows: the values, the error (beside its field when it names one),
/// whether it edits a mailing (and which) or makes a new one.
pub(super) struct Form<'a> {
    pub form: &'a super::mailing_form::MailingForm,
    pub error: Option<&'a crate::domain::InvalidInput>,
    pub editing: Option<i64>,
    /// `mailing.default_window_hours`, for the end's hint.
    pub window_hours: u32,
}

/// A question asked before an action is taken.
pub(super) struct Confirmation<'a> {
    pub title: &'a str,
    pub question: &'a str,
    /// The button's label.
    pub label: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// Where "Back" leads.
    pub back: &'a str,
}

/// What the page of one mailing shows.
pub(super) struct MailingPage<'a> {
    pub mailing: &'a Mailing,
    pub counts: &'a StateCounts,
    pub messages: &'a [MessageRow],
    /// The state the messages are filtered by, if any.
    pub filter: Option<&'a str>,
    /// The link to the next page of messages, if there is one.
    pub next: Option<String>,
}

impl Activity {
    /// What the activity's template shows.
    fn view(&self) -> minijinja::Value {
        context! {
            states => self.states.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            today => self.today.iter().map(|(channel, counts)| context! {
                channel => channel,
                counts => counts,
            }).collect::<Vec<_>>(),
            hours => self.chart_hours,
            as_of => chrono::DateTime::from_timestamp_millis(self.computed_at)
                .map(|t| t.format("%H:%M:%S UTC").to_string()),
            chart => self.chart(),
            errors => self.errors.iter().map(|(error, count)| context! {
                error => error,
                count => count,
            }).collect::<Vec<_>>(),
        }
    }

    /// The chart as bars: one a minute, 3 units apart, scaled to the busiest minute.
    fn chart(&self) -> minijinja::Value {
        const HEIGHT: i64 = 100;
        let minutes = self.chart_hours * 60;
        let max = self.sends.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let total: i64 = self.sends.iter().map(|(_, n)| *n).sum();
        let bars: Vec<minijinja::Value> = self
            .sends
            .iter()
            .filter_map(|(minute, count)| {
                let slot = (minute - self.chart_since).div_euclid(60_000);
                (0..minutes).contains(&slot).then(|| {
                    let h = if max == 0 {
                        0
                    } else {
                        (count * HEIGHT / max).max(1)
                    };
                    let label = chrono::DateTime::from_timestamp_millis(*minute)
                        .map(|t| format!("{} UTC: {count} sent", t.format("%H:%M")))
                        .unwrap_or_default();
                    context! { x => slot * 3, y => HEIGHT - h, h => h, label => label }
                })
            })
            .collect();
        context! { width => minutes * 3, height => HEIGHT, bars => bars, max => max, total => total }
    }
}

/// A moment as the pages show it: to the minute, in UTC.
pub(super) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// How much of a mailing is finished, in whole percent.
pub(super) fn percent(finished: i64, total: i64) -> i64 {
    if total == 0 {
        0
    } else {
        finished * 100 / total
    }
}

/// The rows of a mailing table.
fn mailing_rows(mailings: &[Mailing]) -> Vec<minijinja::Value> {
    mailings
        .iter()
        .map(|m| {
            context! {
                id => m.id.0,
                channel => m.channel.as_str(),
                state => m.state.as_str(),
                recipients => m.recipients,
            }
        })
        .collect()
}
