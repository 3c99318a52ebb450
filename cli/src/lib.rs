//! The `blast` command line: the clap command tree and the terminal output helpers (tables,
//! progress bars, times). It knows nothing of the database; the daemon library acts on it.

mod output;

pub use output::{Progress, format_duration_ms, format_time_ms, table};

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// blast: bulk messaging and notifications.
#[derive(Debug, Parser)]
#[command(
    name = "blast",
    version,
    about = "blast: bulk messaging and notifications (SMS, email, Telegram, web push)",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (default: ./config.toml when it exists).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BLAST_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Database URL; overrides database_url from the configuration.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// The user (tenant) to act as; may be left out when there is only one.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BLAST_USER",
        value_name = "NAME"
    )]
    pub user: Option<String>,
    /// Act through a remote blast's HTTP API instead of the local database
    /// (client, mailing and stats commands).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BLAST_SERVER",
        value_name = "URL",
        requires = "token"
    )]
    pub server: Option<String>,
    /// The API token for --server (from `blast token create` on the server).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BLAST_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: the HTTP API, scheduler, pump and workers (the embedded
    /// profile).
    Up {
        /// Address for the HTTP API (default: api.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Run without the HTTP API.
        #[arg(long)]
        no_api: bool,
    },
    /// Run the HTTP API only.
    Serve {
        /// Address to listen on (default: api.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Run a worker process only (more may run beside it against the same database).
    Worker,
    /// Run the subscriber bot (the `[bot]` settings): /start subscribes a chat as a client,
    /// /stop opts it out. Long polling, or a webhook listener with `bot.mode = "webhook"`.
    Bot,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage users (operators; each one is a tenant).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage clients (the recipients).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Create, inspect, follow and cancel mailings.
    #[command(subcommand)]
    Mailing(MailingCommand),
    /// Register the tenant's own Telegram bots; a mailing names one with --bot.
    #[command(subcommand)]
    TelegramBot(TelegramBotCommand),
    /// Send one event to one client over its preferred channels (web push, Telegram, email).
    Notify(NotifyArgs),
    /// Message counts per mailing and state.
    Stats(StatsArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tenant secrets at rest (registered bots' tokens, webhook secrets).
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every tenant secret again under secrets.key: after setting a key for the first
    /// time, or after changing it (keep the old one in secrets.previous_keys until this ran).
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is asked for twice, or read from stdin.
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user: its tokens stop working, its mailings keep running.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
}

#[derive(Subcommand)]
pub enum TelegramBotCommand {
    /// Register a bot under NAME. Its messages count against its own Telegram limits.
    Add {
        /// What mailings call it (--bot NAME): 1-64 of a-z, 0-9, - and _.
        name: String,
        /// The token from @BotFather (better given by the environment than on the command
        /// line, where other users of the machine can see it).
        #[arg(long, env = "BLAST_NEW_BOT_TOKEN", hide_env_values = true)]
        bot_token: String,
    },
    /// List the registered bots (never their tokens).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a bot; refused while an unfinished mailing names it.
    Remove { name: String },
}

/// Without the token: a command is logged or shown in errors.
impl std::fmt::Debug for TelegramBotCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TelegramBotCommand::Add { name, .. } => f
                .debug_struct("Add")
                .field("name", name)
                .finish_non_exhaustive(),
            TelegramBotCommand::List { json } => {
                f.debug_struct("List").field("json", json).finish()
            }
            TelegramBotCommand::Remove { name } => {
                f.debug_struct("Remove").field("name", name).finish()
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for USER and print it once.
    Create {
        /// The user the token acts as.
        user: String,
        /// A note to tell tokens apart.
        #[arg(long, default_value = "")]
        label: String,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct ClientFields {
    /// Phone in the form 7XXXXXXXXXX.
    #[arg(long)]
    pub phone: Option<String>,
    /// The client's name ({{ name }} in templates).
    #[arg(long)]
    pub name: Option<String>,
    /// Email address, for email mailings and notifications.
    #[arg(long)]
    pub email: Option<String>,
    /// Telegram chat id, for Telegram mailings and notifications.
    #[arg(long, allow_negative_numbers = true)]
    pub telegram_chat_id: Option<i64>,
    /// IANA time zone, e.g. Europe/Moscow.
    #[arg(long = "tz", value_name = "ZONE")]
    pub timezone: Option<String>,
    /// A free-form attribute for templates, KEY=VALUE (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attributes: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Add one client.
    Add {
        #[command(flatten)]
        fields: ClientFields,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List clients, oldest first, a page at a time.
    List {
        /// Only clients with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Operator code, e.g. 900.
        #[arg(long)]
        operator: Option<String>,
        /// Show clients after this id (the last id of the previous page).
        #[arg(long)]
        after: Option<i64>,
        /// How many to show at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        id: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a client.
    Update {
        id: i64,
        #[command(flatten)]
        fields: ClientFields,
        /// Add a tag (repeatable).
        #[arg(long = "add-tag")]
        add_tags: Vec<String>,
        /// Remove a tag (repeatable).
        #[arg(long = "remove-tag")]
        remove_tags: Vec<String>,
        /// Remove an attribute (repeatable).
        #[arg(long = "unset-attr", value_name = "KEY")]
        unset_attributes: Vec<String>,
    },
    /// Delete a client.
    Delete { id: i64 },
    /// Import clients from a CSV file with a header row: phone, and optionally name, email,
    /// telegram_chat_id, timezone, tags (separated by ';'); other columns become attributes.
    /// Existing clients (same phone) are updated. All rows or none, unless --skip-invalid.
    Import {
        file: PathBuf,
        /// Import the valid rows and report the others, instead of importing nothing.
        #[arg(long)]
        skip_invalid: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailingCommand {
    /// Create a mailing; it starts by itself at --start.
    Create(Box<MailingCreateArgs>),
    /// List mailings, newest first.
    List {
        /// How many to show at most.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a mailing with its message counts per state.
    Show {
        id: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a mailing: nothing more of it is sent.
    Cancel { id: i64 },
    /// Follow a mailing with a progress bar until it is done.
    Watch { id: i64 },
}

#[derive(Debug, Clone, Args)]
pub struct MailingCreateArgs {
    /// The message; may use client fields and attributes: {{ name }}, {{ city }}. On Telegram
    /// with media it is the caption (--caption says the same).
    #[arg(long, alias = "caption", required_unless_present_any = ["photo", "video", "voice", "video_note", "animation", "document", "album"])]
    pub text: Option<String>,
    /// Send to clients with this tag (repeatable: any of them).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Send to clients of this operator code (repeatable: any of them).
    #[arg(long = "operator")]
    pub operators: Vec<String>,
    /// When to start (RFC 3339, e.g. 2026-12-01T10:00:00Z, or "now"). Default: now.
    #[arg(long)]
    pub start: Option<String>,
    /// When to stop; unsent messages then expire. Default: start + mailing.default_window_hours.
    #[arg(long)]
    pub end: Option<String>,
    /// The priority lane: high, medium or low.
    #[arg(long, default_value = "medium", value_parser = ["high", "medium", "low"])]
    pub priority: String,
    /// Send only within these hours of each recipient's own day (its time zone), e.g.
    /// 09:00-21:00; messages outside wait for the next opening.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub local_hours: Option<String>,
    /// The channel: sms, email, telegram, webpush, or log (a JSON-lines file, for trials).
    #[arg(long, default_value = "sms", value_parser = ["sms", "email", "telegram", "webpush", "log"])]
    pub channel: String,
    /// Email: the subject, a template like the text (required with --channel email).
    #[arg(long)]
    pub subject: Option<String>,
    /// Email: an HTML body from this file, a template like the text, sent beside the text.
    #[arg(long, value_name = "FILE")]
    pub html_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub telegram: TelegramArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What a Telegram mailing sends beside its text. MEDIA is an http(s) URL, `file_id:ID` (a file
/// Telegram already has), or a local file (stored with the mailing, uploaded once).
#[derive(Debug, Clone, Args)]
#[group(multiple = false, id = "media")]
pub struct TelegramMedia {
    /// Telegram: send a photo, the text as its caption.
    #[arg(long, value_name = "MEDIA")]
    pub photo: Option<String>,
    /// Telegram: send a video.
    #[arg(long, value_name = "MEDIA")]
    pub video: Option<String>,
    /// Telegram: send a voice message (OGG/Opus).
    #[arg(long, value_name = "MEDIA")]
    pub voice: Option<String>,
    /// Telegram: send a round video note (no caption).
    #[arg(long, value_name = "MEDIA")]
    pub video_note: Option<String>,
    /// Telegram: send an animation (GIF or soundless MP4).
    #[arg(long, value_name = "MEDIA")]
    pub animation: Option<String>,
    /// Telegram: send a document (any file).
    #[arg(long, value_name = "MEDIA")]
    pub document: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TelegramArgs {
    #[command(flatten)]
    pub media: TelegramMedia,
    /// Telegram: one item of an album (repeat 2 to 10 times), KIND:MEDIA with KIND photo,
    /// video or document, e.g. --album photo:./a.jpg --album video:https://x/v.mp4; the text
    /// is the album's caption.
    #[arg(long, value_name = "KIND:MEDIA", conflicts_with = "media")]
    pub album: Vec<String>,
    /// Telegram: send through this registered bot (`blast telegram-bot add`) instead of
    /// telegram.bot_token.
    #[arg(long, value_name = "NAME")]
    pub bot: Option<String>,
    /// Telegram: how the text is read: html or markdownv2 (default: plain text).
    #[arg(long, value_parser = ["html", "markdownv2"])]
    pub parse_mode: Option<String>,
    /// Telegram: no preview of the first link of a text message.
    #[arg(long)]
    pub no_link_preview: bool,
    /// Telegram: a link button under the message, LABEL=URL (repeatable, one row each).
    #[arg(long = "button", value_name = "LABEL=URL")]
    pub buttons: Vec<String>,
    /// Telegram: a paid broadcast, up to telegram.paid_per_second instead of ~30/s (Telegram
    /// charges Stars for every message past the free rate).
    #[arg(long)]
    pub paid_broadcast: bool,
}

impl TelegramMedia {
    /// The kind of message and its MEDIA, when one was given.
    pub fn chosen(&self) -> Option<(&'static str, &str)> {
        [
            ("photo", &self.photo),
            ("video", &self.video),
            ("voice", &self.voice),
            ("video_note", &self.video_note),
            ("animation", &self.animation),
            ("document", &self.document),
        ]
        .into_iter()
        .find_map(|(kind, media)| media.as_deref().map(|m| (kind, m)))
    }
}

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// The daily report of this day (YYYY-MM-DD in stats.timezone): every tenant's mailings,
    /// per mailing and per channel, as the daily statistics email has it. With --server, your
    /// own mailings' counts for that UTC day.
    #[arg(long)]
    pub day: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Mail the day's report to stats.recipients now (as the daily job does).
    #[arg(long, requires = "day")]
    pub email: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets hidden).
    Show,
    /// Make a VAPID key pair for web push: the private key goes into
    /// webpush.vapid_private_key, the public one to browsers as applicationServerKey.
    VapidKeys,
    /// Make a key for secrets.key, which seals tenants' bot tokens and webhook secrets.
    SecretKey,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The client to notify.
    #[arg(long)]
    pub client: i64,
    /// One line.
    #[arg(long)]
    pub title: String,
    #[arg(long, default_value = "")]
    pub body: String,
    /// Where the event leads (an http(s) URL).
    #[arg(long)]
    pub link: Option<String>,
    /// Free JSON for the receiving app (a web push carries it).
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// The priority lane: high, medium or low.
    #[arg(long, default_value = "high", value_parser = ["high", "medium", "low"])]
    pub priority: String,
    /// Deliver even in the client's quiet hours.
    #[arg(long)]
    pub urgent: bool,
    /// Hold it this many minutes and send the client's events that arrive meanwhile (with the
    /// same --coalesce-key) as one digest.
    #[arg(long, default_value_t = 0, value_name = "MINUTES")]
    pub coalesce_minutes: u32,
    /// Which waiting notifications coalesce with this one (default: all of the client's).
    #[arg(long, value_name = "KEY")]
    pub coalesce_key: Option<String>,
    /// Running the command again with the same key does not notify twice.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Print the notification as JSON.
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mailing_create_parses_as_documented() {
        let cli = Cli::try_parse_from([
            "blast",
            "mailing",
            "create",
            "--text",
            "Hi {{ name }}",
            "--tag",
            "vip",
            "--operator",
            "900",
            "--start",
            "2026-12-01T10:00:00Z",
            "--priority",
            "high",
        ])
        .expect("parses");
        let Command::Mailing(MailingCommand::Create(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(args.tags, ["vip"]);
        assert_eq!(args.operators, ["900"]);
        assert_eq!(args.priority, "high");
        assert_eq!(args.channel, "sms");
        assert!(
            Cli::try_parse_from([
                "blast",
                "mailing",
                "create",
                "--text",
                "x",
                "--priority",
                "urgent"
            ])
            .is_err()
        );
    }
}
