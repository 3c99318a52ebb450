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
    /// Create, preview, follow, pause, resume, retry and cancel mailings.
    #[command(subcommand)]
    Mailing(MailingCommand),
    /// Register the tenant's own Telegram bots; a mailing names one with --bot.
    #[command(subcommand)]
    TelegramBot(TelegramBotCommand),
    /// URLs your delivery, mailing and notification events are posted to, signed.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Send one event to one client over its preferred channels (web push, Telegram, email).
    Notify(NotifyArgs),
    /// Follow notifications and set how each client wants them.
    #[command(subcommand)]
    Notification(NotificationCommand),
    /// Browsers' web push subscriptions of clients.
    #[command(subcommand)]
    Push(PushCommand),
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
pub enum WebhookCommand {
    /// Register a URL; prints the signing secret once (the key of each event's
    /// Blast-Signature, HMAC-SHA256 over "<t>.<body>").
    #[command(visible_alias = "add")]
    Create {
        /// Where events are posted (http(s), on a public address unless
        /// webhooks.allow_private_addresses).
        url: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the registered webhooks (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a webhook and the events still owed to it.
    #[command(visible_alias = "remove")]
    Delete { id: i64 },
    /// The latest events of a webhook, newest first: state, attempts, last error.
    Deliveries {
        id: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// A notification: where it stands, the channels tried, its events.
    Show {
        id: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a client's channel order and quiet hours, or change them.
    Preferences {
        /// The client.
        client: i64,
        /// Channels in the order to try them, comma-separated: webpush, telegram, email, sms.
        #[arg(long, value_delimiter = ',', value_name = "CHANNELS")]
        channels: Vec<String>,
        /// Hours in the client's time zone when notifications wait (unless urgent), e.g.
        /// 22:00-07:00.
        #[arg(long, value_name = "HH:MM-HH:MM", conflicts_with = "no_quiet_hours")]
        quiet_hours: Option<String>,
        /// Remove the client's quiet hours.
        #[arg(long)]
        no_quiet_hours: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Store a browser's subscription for a client (what PushSubscription.toJSON() gives).
    #[command(visible_alias = "add")]
    Create {
        /// The client.
        client: i64,
        /// The push service URL the browser was given.
        #[arg(long)]
        endpoint: String,
        /// The browser's P-256 public key (keys.p256dh), base64url.
        #[arg(long)]
        p256dh: String,
        /// The browser's authentication secret (keys.auth), base64url.
        #[arg(long)]
        auth: String,
    },
    /// A client's subscriptions.
    List {
        /// The client.
        client: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a subscription.
    #[command(visible_alias = "remove")]
    Delete { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal every tenant secret again under secrets.key: after setting a key for the first
    /// time, or after changing it (keep the old one in secrets.previous_keys until this ran).
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is asked for twice, or read from stdin.
    #[command(visible_alias = "add")]
    Create {
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
    #[command(visible_alias = "add")]
    Create {
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
    #[command(visible_alias = "remove")]
    Delete { name: String },
}

/// Without the token: a command is logged or shown in errors.
impl std::fmt::Debug for TelegramBotCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TelegramBotCommand::Create { name, .. } => f
                .debug_struct("Create")
                .field("name", name)
                .finish_non_exhaustive(),
            TelegramBotCommand::List { json } => {
                f.debug_struct("List").field("json", json).finish()
            }
            TelegramBotCommand::Delete { name } => {
                f.debug_struct("Delete").field("name", name).finish()
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for USER and print it once.
    #[command(visible_alias = "add")]
    Create {
        /// The user the token acts as.
        user: String,
        /// A note to tell tokens apart.
        #[arg(long, default_value = "")]
        label: String,
        /// The token stops working after this long: a number and a unit, s, m, h, d or w
        /// (e.g. 90d). Default: it works until revoked.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        expires_in: Option<u64>,
    },
    /// List USER's working tokens (never the tokens themselves).
    List {
        /// The user whose tokens to list.
        user: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke token ID of USER (the id `token list` shows): API processes stop taking it
    /// within api.token_cache_secs.
    #[command(visible_alias = "delete")]
    Revoke {
        /// The user the token belongs to.
        user: String,
        /// The token's id.
        id: i64,
    },
}

/// "90d" as seconds: a whole number and one unit, s, m, h, d or w.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: add s, m, h, d or w (e.g. 90d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number (e.g. 90d)"))?;
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h, d or w")),
    };
    match number.checked_mul(unit_secs) {
        Some(0) => Err("a duration of 0 would make a token that never works".to_owned()),
        Some(secs) if secs <= 100 * 365 * 86_400 => Ok(secs),
        _ => Err(format!("{text:?} is longer than 100 years")),
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct ClientFields {
    /// Phone: +79001234567, 89001234567, 79001234567 or any country's E.164 (+44…); stored
    /// as E.164 digits.
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
    /// Create one client.
    #[command(visible_alias = "add")]
    Create {
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
        /// How many to show at most (1 to 10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
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
    /// Print a token for a client's app: the credential it opens its in-app inbox with
    /// (GET /api/v1/inbox/ws and the /api/v1/inbox routes), good for inapp.token_ttl_secs.
    InboxToken {
        id: i64,
        /// Print JSON (token, client_id, expires_at) instead of the token alone.
        #[arg(long)]
        json: bool,
    },
    /// Delete a client (its messages stay in the mailings' counts).
    #[command(visible_alias = "remove")]
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
    #[command(visible_alias = "add")]
    Create(Box<MailingCreateArgs>),
    /// What a mailing would do, without creating it: how many clients it reaches, how long it
    /// takes at the channel's rate, and its text for the first of them.
    Preview(Box<MailingCreateArgs>),
    /// List mailings, newest first.
    List {
        /// How many to show at most (1 to 10000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
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
    /// The messages of a mailing, one per recipient, by id: state, attempts, last error.
    Messages {
        id: i64,
        /// Only messages in this state.
        #[arg(long, value_enum)]
        state: Option<MessageStateArg>,
        /// Show messages after this message id (the last id of the previous page).
        #[arg(long, value_name = "MESSAGE_ID")]
        after: Option<i64>,
        /// How many to show at most (1 to 10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace a mailing that has not started yet: the same flags as `create`.
    Update(Box<MailingUpdateArgs>),
    /// Delete a mailing that is not running (cancel it first), with its messages.
    #[command(visible_alias = "remove")]
    Delete { id: i64 },
    /// Pause a mailing: nothing more is sent until it is resumed (its end still applies).
    Pause { id: i64 },
    /// Resume a paused mailing.
    Resume { id: i64 },
    /// Send the permanently failed messages of a mailing again, within its window.
    RetryFailed { id: i64 },
    /// Cancel a mailing: nothing more of it is sent.
    Cancel { id: i64 },
    /// Follow a mailing with a progress bar until it is done.
    Watch { id: i64 },
}

#[derive(Debug, Clone, Args)]
pub struct MailingUpdateArgs {
    /// The mailing to replace.
    pub id: i64,
    #[command(flatten)]
    pub mailing: MailingCreateArgs,
}

/// A priority lane, as `--priority` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorityArg {
    High,
    Medium,
    Low,
}

impl PriorityArg {
    pub fn as_str(self) -> &'static str {
        match self {
            PriorityArg::High => "high",
            PriorityArg::Medium => "medium",
            PriorityArg::Low => "low",
        }
    }
}

/// The command tree with every `--channel` limited to `names`, the channels the daemon has
/// registered: this crate does not know them, so the binary passes them in (and `--help`
/// lists them).
pub fn with_channels(mut command: clap::Command, names: &[&'static str]) -> clap::Command {
    if command.get_arguments().any(|arg| arg.get_id() == "channel") {
        let values = names.to_vec();
        command = command.mut_arg("channel", |arg| {
            arg.value_parser(clap::builder::PossibleValuesParser::new(values))
        });
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |sub| with_channels(sub, names));
    }
    command
}

/// How Telegram reads a text, as `--parse-mode` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParseModeArg {
    Html,
    Markdownv2,
}

impl ParseModeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseModeArg::Html => "html",
            ParseModeArg::Markdownv2 => "markdownv2",
        }
    }
}

/// A message's state, as `mailing messages --state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum MessageStateArg {
    Pending,
    Queued,
    Sending,
    Sent,
    FailedTemporary,
    FailedPermanent,
    Expired,
    Cancelled,
    Skipped,
    Unknown,
}

impl MessageStateArg {
    /// The state's name as the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStateArg::Pending => "pending",
            MessageStateArg::Queued => "queued",
            MessageStateArg::Sending => "sending",
            MessageStateArg::Sent => "sent",
            MessageStateArg::FailedTemporary => "failed_temporary",
            MessageStateArg::FailedPermanent => "failed_permanent",
            MessageStateArg::Expired => "expired",
            MessageStateArg::Cancelled => "cancelled",
            MessageStateArg::Skipped => "skipped",
            MessageStateArg::Unknown => "unknown",
        }
    }
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
    /// Send to clients of this operator code (repeatable: any of them; with --tag, clients
    /// matching both).
    #[arg(long = "operator")]
    pub operators: Vec<String>,
    /// Send to every client. Without --tag or --operator this must be said: a forgotten
    /// filter is an error, not the whole base.
    #[arg(long)]
    pub all: bool,
    /// When to start (RFC 3339, e.g. 2026-12-01T10:00:00Z, or "now"). Default: now.
    #[arg(long)]
    pub start: Option<String>,
    /// When to stop; unsent messages then expire. Default: start + mailing.default_window_hours.
    #[arg(long)]
    pub end: Option<String>,
    /// The priority lane: high, medium or low.
    #[arg(long, value_enum, default_value_t = PriorityArg::Medium)]
    pub priority: PriorityArg,
    /// Send only within these hours of each recipient's own day (its time zone), e.g.
    /// 09:00-21:00; messages outside wait for the next opening.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub local_hours: Option<String>,
    /// The channel it goes out on (log: a JSON-lines file, for trials).
    #[arg(long, default_value = "sms")]
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
    #[arg(long, value_enum)]
    pub parse_mode: Option<ParseModeArg>,
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
    /// The text under the title.
    #[arg(long, default_value = "")]
    pub body: String,
    /// Where the event leads (an http(s) URL).
    #[arg(long)]
    pub link: Option<String>,
    /// Free JSON for the receiving app (a web push carries it).
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// The priority lane: high, medium or low.
    #[arg(long, value_enum, default_value_t = PriorityArg::High)]
    pub priority: PriorityArg,
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
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag of every command says what it does in `--help`.
    #[test]
    fn every_flag_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if arg.get_long().is_some() && !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or_default()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "blast", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration_secs("90d"), Ok(90 * 86_400));
        assert_eq!(parse_duration_secs("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration_secs("30m"), Ok(1_800));
        for bad in ["", "d", "10", "10y", "0h", "-1h", "1.5h", "99999999999999w"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad:?}");
        }
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
        assert_eq!(args.priority, PriorityArg::High);
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

    #[test]
    fn channel_takes_the_names_the_binary_registers() {
        let command = with_channels(Cli::command(), &["sms", "pigeon"]);
        let with = |channel: &str| {
            command.clone().try_get_matches_from([
                "blast",
                "mailing",
                "create",
                "--text",
                "x",
                "--channel",
                channel,
            ])
        };
        let matches = with("pigeon").expect("a registered channel");
        let cli = Cli::from_arg_matches(&matches).expect("parses");
        let Command::Mailing(MailingCommand::Create(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(args.channel, "pigeon");
        let refused = with("email").expect_err("not registered");
        assert!(refused.to_string().contains("pigeon"), "{refused}");
    }
}
