//! Telegram's rate limits, counted per bot: all chats, one chat, one group chat, and the
//! higher ceiling of paid broadcasts.

use super::TelegramSettings;
use crate::limits::Limit;
use std::time::Duration;

/// Telegram's limits, the same for every bot, each bot counted under its own keys.
#[derive(Debug, Clone)]
pub(super) struct TelegramLimits {
    bot_per_second: u32,
    paid_per_second: u32,
    chat_per_second: u32,
    group_per_minute: u32,
}

impl TelegramLimits {
    pub(super) fn new(settings: &TelegramSettings) -> TelegramLimits {
        TelegramLimits {
            bot_per_second: settings.bot_per_second,
            paid_per_second: settings.paid_per_second,
            chat_per_second: settings.chat_per_second,
            group_per_minute: settings.group_per_minute,
        }
    }

    pub(super) fn bot_key(bot_id: &str) -> String {
        format!("tg:bot:{bot_id}")
    }

    /// The key of the bot's paid-broadcast ceiling.
    pub(super) fn paid_key(bot_id: &str) -> String {
        format!("tg:bot:{bot_id}:paid")
    }

    /// The bot's limit, the chat's, and a group chat's (negative ids are groups). None runs
    /// more than a send or three ahead of its rate: Telegram answers a burst with 429s. The
    /// bot's limit lets a higher lane run two sends further ahead, so priorities hold when the
    /// bot is the bottleneck.
    /// A paid broadcast counts against its own, higher ceiling.
    pub(super) fn for_chat(&self, bot_id: &str, chat: &str, paid: bool) -> Vec<Limit> {
        let mut bot = if paid {
            Limit::per_second(Self::paid_key(bot_id), self.paid_per_second, Duration::ZERO)
        } else {
            Limit::per_second(Self::bot_key(bot_id), self.bot_per_second, Duration::ZERO)
        };
        // One send of slack, so a sender that wakes a little late does not lose the turn:
        // without it a sustained mailing runs a few per cent under the rate.
        bot.burst = bot.interval;
        let headroom = bot.interval * 2;
        let mut limits = vec![
            bot.with_headroom(headroom),
            Limit::per_second(
                format!("tg:chat:{bot_id}:{chat}"),
                self.chat_per_second,
                Duration::ZERO,
            )
            .with_headroom(Duration::ZERO),
        ];
        if chat.starts_with('-') {
            limits.push(
                Limit::new(
                    format!("tg:group:{bot_id}:{chat}"),
                    self.group_per_minute,
                    Duration::from_secs(60),
                    Duration::ZERO,
                )
                .with_headroom(Duration::ZERO),
            );
        }
        limits
    }
}
