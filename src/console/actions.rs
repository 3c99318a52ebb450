//! What an operator can do to a mailing from its page: cancel, pause, resume, retry the failed
//! messages. Each is confirmed first and then taken through the store functions the API calls.

use crate::domain::MailingState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Cancel,
    Pause,
    Resume,
    RetryFailed,
}

impl Action {
    pub(super) const ALL: [Action; 4] = [
        Action::Pause,
        Action::Resume,
        Action::RetryFailed,
        Action::Cancel,
    ];

    /// The action a URL names (`/mailings/{id}/{path}`).
    pub(super) fn from_path(path: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.path() == path)
    }

    pub(super) fn path(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::RetryFailed => "retry-failed",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Action::Cancel => "Cancel",
            Action::Pause => "Pause",
            Action::Resume => "Resume",
            Action::RetryFailed => "Retry failed",
        }
    }

    pub(super) fn question(self) -> &'static str {
        match self {
            Action::Cancel => {
                "Cancel this mailing? Nothing more of it is sent, and that cannot be undone."
            }
            Action::Pause => "Pause this mailing? Nothing more is sent until it is resumed.",
            Action::Resume => "Resume this mailing?",
            Action::RetryFailed => {
                "Send this mailing's permanently failed messages again, within its window?"
            }
        }
    }

    /// Whether the page offers the action for a mailing in `state`.
    pub(super) fn applies_to(self, state: MailingState) -> bool {
        match self {
            Action::Cancel => matches!(
                state,
                MailingState::Scheduled | MailingState::Running | MailingState::Paused
            ),
            Action::Pause => state == MailingState::Running,
            Action::Resume => state == MailingState::Paused,
            Action::RetryFailed => {
                matches!(state, MailingState::Running | MailingState::Done)
            }
        }
    }
}
