//! The `blast` binary: parse the command line, load the configuration, dispatch.

use anyhow::Context as _;
use blast::admin::{self, AdminError, Context};
use blast::ids::MailingId;
use blast::settings::{Settings, SettingsError};
use blast::store::{Store, StoreError};
use blast::worker::{self, Tenancy, WorkerError};
use blast_cli::{
    Cli, ClientCommand, Command, ConfigCommand, MailingCommand, NotificationCommand, PushCommand,
    SecretsCommand, TelegramBotCommand, TokenCommand, UserCommand, WebhookCommand,
};
use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    // `--channel` takes the channels this build registers (blast-cli cannot see them).
    let channels = blast::domain::ChannelKind::ALL.map(blast::domain::ChannelKind::as_str);
    let matches = blast_cli::with_channels(Cli::command(), &channels).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A mistake in the command is exit code 2 (as for usage errors), a failure 1.
            let usage = is_usage_error(&e);
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Run the API (on `api`) and the worker (with `tenancy`) until Ctrl-C or SIGTERM; when one
/// of them fails, the other is stopped too.
/// A token cancelled by Ctrl-C or SIGTERM.
fn cancelled_on_signal() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            blast::shutdown::signal().await;
            stop.cancel();
        }
    });
    stop
}

async fn run_roles(
    store: Store,
    settings: Settings,
    api: Option<tokio::net::TcpListener>,
    tenancy: Option<Tenancy>,
) -> anyhow::Result<()> {
    let stop = cancelled_on_signal();
    tracing::info!(database = %blast::settings::redacted_url(&settings.database_url), "blast is up; Ctrl-C stops it");
    let api_task = api.map(|listener| {
        let (store, settings, stop) = (store.clone(), settings.clone(), stop.clone());
        tokio::spawn(async move {
            let result =
                blast::api::serve(listener, store, settings, stop.clone().cancelled_owned()).await;
            stop.cancel();
            result
        })
    });
    let worker_result = match tenancy {
        Some(tenancy) => {
            let result = worker::run(
                store.clone(),
                settings,
                tenancy,
                stop.clone().cancelled_owned(),
            )
            .await;
            stop.cancel();
            result.map_err(anyhow::Error::from)
        }
        None => Ok(()),
    };
    if let Some(task) = api_task {
        task.await
            .context("the API task panicked")?
            .context("the API failed")?;
    }
    store.close().await;
    worker_result
}

/// A mistake in the command or the configuration, as opposed to a failure of blast.
fn is_usage_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<AdminError>()
        .is_some_and(AdminError::is_usage_error)
        || e.downcast_ref::<SettingsError>().is_some()
        || e.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_client_error)
        || matches!(e.downcast_ref::<WorkerError>(), Some(WorkerError::Store(s)) if s.is_client_error())
        || matches!(
            e.downcast_ref::<blast::bot::BotError>(),
            Some(blast::bot::BotError::Config(_))
        )
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(url) = &cli.database_url {
        overrides.push(("database_url", url.clone()));
    }
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    blast::domain::set_default_phone_region(&settings.phones.default_region)?;
    let serving = matches!(
        cli.command,
        Command::Up { .. } | Command::Serve { .. } | Command::Worker | Command::Bot
    );
    blast::telemetry::init(settings.log_format, if serving { "info" } else { "warn" });
    for name in &settings.ignored_env {
        tracing::warn!(
            variable = %name,
            "{name} names no setting of blast; ignored (settings are BLAST_SECTION__KEY, e.g. BLAST_SMS__TOKEN)"
        );
    }

    if let Command::Config(ConfigCommand::Show) = cli.command {
        print!("{}", settings.to_redacted_toml());
        return Ok(());
    }
    if let Command::Config(ConfigCommand::SecretKey) = cli.command {
        println!("# config.toml (keep it secret; losing it loses the sealed secrets):");
        println!("[secrets]");
        println!("key = \"{}\"", blast::store::SecretKeys::generate());
        return Ok(());
    }
    if let Command::Config(ConfigCommand::VapidKeys) = cli.command {
        let keys = blast::channels::VapidKeys::generate();
        println!("# config.toml (keep the private key secret):");
        println!("[webpush]");
        println!("vapid_private_key = \"{}\"", keys.private_key);
        println!();
        println!("# give browsers this as applicationServerKey:");
        println!("# {}", keys.public_key);
        return Ok(());
    }

    // Tenant commands with --server go to the remote API and never touch a local database.
    let remote = match (&cli.server, &cli.token, &cli.command) {
        (
            Some(server),
            Some(token),
            Command::Client(_)
            | Command::Mailing(_)
            | Command::TelegramBot(_)
            | Command::Webhook(_)
            | Command::Notification(_)
            | Command::Push(_)
            | Command::Notify(_)
            | Command::Stats(_),
        ) => Some(admin::backend::RemoteApi::new(server, token)?),
        _ => None,
    };
    if cli.server.is_some() && matches!(cli.command, Command::User(_) | Command::Token(_)) {
        return Err(admin::backend::local_only("managing users and tokens").into());
    }
    if remote.is_some() && cli.user.is_some() {
        return Err(admin::backend::local_only(
            "--user (with --server the token says who you are)",
        )
        .into());
    }
    if remote.is_some() {
        let ctx = Context {
            store: None,
            remote,
            settings,
            user: cli.user,
        };
        return Ok(dispatch(&ctx, cli.command).await?);
    }

    let store = Store::open_sized(&settings.database_url, settings.pool.sizes())
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                blast::settings::redacted_url(&settings.database_url)
            )
        })?
        .with_secret_keys(settings.secret_keys()?)
        .with_media_quota(settings.telegram.media_quota_bytes);
    if serving && !store.seals_secrets() {
        tracing::warn!(
            "secrets.key is not set: tenants' bot tokens and webhook secrets are stored unsealed (blast config secret-key makes a key)"
        );
    }

    match cli.command {
        Command::Up { listen, no_api } => {
            let api = if no_api {
                None
            } else {
                Some(bind(listen.as_deref().unwrap_or(&settings.api.listen)).await?)
            };
            run_roles(store, settings, api, Some(Tenancy::Exclusive)).await?;
            return Ok(());
        }
        Command::Serve { listen } => {
            let api = bind(listen.as_deref().unwrap_or(&settings.api.listen)).await?;
            run_roles(store, settings, Some(api), None).await?;
            return Ok(());
        }
        Command::Worker => {
            if !settings.worker.metrics_listen.is_empty() {
                let listener = bind(&settings.worker.metrics_listen).await?;
                tracing::info!(addr = %settings.worker.metrics_listen, "metrics listening");
                let token = settings.api.metrics_token.expose().to_owned();
                tokio::spawn(async move {
                    if let Err(e) = blast::metrics::serve_alone(listener, token).await {
                        tracing::error!(error = %e, "metrics endpoint stopped");
                    }
                });
            }
            run_roles(store, settings, None, Some(Tenancy::Shared)).await?;
            return Ok(());
        }
        Command::Bot => {
            let bot = blast::bot::SubscriberBot::from_settings(store.clone(), &settings)
                .await?
                .ok_or_else(|| {
                    blast::bot::BotError::Config(
                        "set bot.tenant (BLAST_BOT__TENANT) to the user whose clients subscribers become".into(),
                    )
                })?;
            let result = bot.run(cancelled_on_signal()).await;
            store.close().await;
            return Ok(result?);
        }
        Command::Migrate => {
            println!(
                "database {} is up to date",
                blast::settings::redacted_url(&settings.database_url)
            );
            return Ok(());
        }
        _ => {}
    }

    let ctx = Context {
        store: Some(store.clone()),
        remote: None,
        settings,
        user: cli.user,
    };
    let result = dispatch(&ctx, cli.command).await;
    store.close().await;
    Ok(result?)
}

async fn dispatch(ctx: &Context, command: Command) -> Result<(), AdminError> {
    match command {
        Command::User(UserCommand::Create {
            name,
            password_stdin,
        }) => admin::user::add(ctx, &name, password_stdin).await,
        Command::User(UserCommand::List) => admin::user::list(ctx).await,
        Command::Secrets(SecretsCommand::Rotate) => admin::secrets::rotate(ctx).await,
        Command::User(UserCommand::Disable { name }) => {
            admin::user::set_disabled(ctx, &name, true).await
        }
        Command::User(UserCommand::Enable { name }) => {
            admin::user::set_disabled(ctx, &name, false).await
        }
        Command::Token(TokenCommand::Create {
            user,
            label,
            expires_in,
        }) => admin::user::create_token(ctx, &user, &label, expires_in).await,
        Command::Token(TokenCommand::List { user, json }) => {
            admin::user::list_tokens(ctx, &user, json).await
        }
        Command::Token(TokenCommand::Revoke { user, id }) => {
            admin::user::revoke_token(ctx, &user, id).await
        }
        Command::Client(ClientCommand::Create { fields, tags }) => {
            admin::client::add(ctx, &fields, &tags).await
        }
        Command::Client(ClientCommand::List {
            tag,
            operator,
            after,
            limit,
            json,
        }) => {
            admin::client::list(ctx, tag.as_deref(), operator.as_deref(), after, limit, json).await
        }
        Command::Client(ClientCommand::Show { id, json }) => {
            admin::client::show(ctx, id, json).await
        }
        Command::Client(ClientCommand::Update {
            id,
            fields,
            add_tags,
            remove_tags,
            unset_attributes,
        }) => {
            admin::client::update(ctx, id, &fields, &add_tags, &remove_tags, &unset_attributes)
                .await
        }
        Command::Client(ClientCommand::Delete { id }) => admin::client::delete(ctx, id).await,
        Command::Client(ClientCommand::InboxToken { id, json }) => {
            admin::client::inbox_token(ctx, id, json).await
        }
        Command::Client(ClientCommand::Import { file, skip_invalid }) => {
            admin::import::run(ctx, &file, skip_invalid).await
        }
        Command::Mailing(MailingCommand::Create(args)) => admin::mailing::create(ctx, &args).await,
        Command::Mailing(MailingCommand::List { limit, json }) => {
            admin::mailing::list(ctx, limit, json).await
        }
        Command::Mailing(MailingCommand::Show { id, json }) => {
            admin::mailing::show(ctx, MailingId(id), json).await
        }
        Command::Mailing(MailingCommand::Preview(args)) => {
            admin::mailing::preview(ctx, &args).await
        }
        Command::Mailing(MailingCommand::Messages {
            id,
            state,
            after,
            limit,
            json,
        }) => admin::mailing::messages(ctx, MailingId(id), state, after, limit, json).await,
        Command::Mailing(MailingCommand::Update(args)) => {
            admin::mailing::update(ctx, MailingId(args.id), &args.mailing).await
        }
        Command::Mailing(MailingCommand::Delete { id }) => {
            admin::mailing::delete(ctx, MailingId(id)).await
        }
        Command::Mailing(MailingCommand::Pause { id }) => {
            admin::mailing::pause(ctx, MailingId(id)).await
        }
        Command::Mailing(MailingCommand::Resume { id }) => {
            admin::mailing::resume(ctx, MailingId(id)).await
        }
        Command::Mailing(MailingCommand::RetryFailed { id }) => {
            admin::mailing::retry_failed(ctx, MailingId(id)).await
        }
        Command::Mailing(MailingCommand::Cancel { id }) => {
            admin::mailing::cancel(ctx, MailingId(id)).await
        }
        Command::Mailing(MailingCommand::Watch { id }) => {
            admin::mailing::watch(ctx, MailingId(id)).await
        }
        Command::TelegramBot(TelegramBotCommand::Create { name, bot_token }) => {
            admin::bots::add(ctx, &name, bot_token).await
        }
        Command::TelegramBot(TelegramBotCommand::List { json }) => {
            admin::bots::list(ctx, json).await
        }
        Command::TelegramBot(TelegramBotCommand::Delete { name }) => {
            admin::bots::remove(ctx, &name).await
        }
        Command::Webhook(WebhookCommand::Create { url, json }) => {
            admin::webhook::create(ctx, &url, json).await
        }
        Command::Webhook(WebhookCommand::List { json }) => admin::webhook::list(ctx, json).await,
        Command::Webhook(WebhookCommand::Delete { id }) => admin::webhook::delete(ctx, id).await,
        Command::Webhook(WebhookCommand::Deliveries { id, json }) => {
            admin::webhook::deliveries(ctx, id, json).await
        }
        Command::Notification(NotificationCommand::Show { id, json }) => {
            admin::notify::show(ctx, id, json).await
        }
        Command::Notification(NotificationCommand::Preferences {
            client,
            channels,
            quiet_hours,
            no_quiet_hours,
            json,
        }) => {
            admin::notify::preferences(ctx, client, &channels, quiet_hours, no_quiet_hours, json)
                .await
        }
        Command::Push(PushCommand::Create {
            client,
            endpoint,
            p256dh,
            auth,
        }) => admin::push::create(ctx, client, endpoint, p256dh, auth).await,
        Command::Push(PushCommand::List { client, json }) => {
            admin::push::list(ctx, client, json).await
        }
        Command::Push(PushCommand::Delete { id }) => admin::push::delete(ctx, id).await,
        Command::Stats(args) => admin::stats::run(ctx, &args).await,
        Command::Notify(args) => admin::notify::run(ctx, &args).await,
        Command::Up { .. }
        | Command::Serve { .. }
        | Command::Worker
        | Command::Bot
        | Command::Migrate
        | Command::Config(_) => Ok(()),
    }
}
