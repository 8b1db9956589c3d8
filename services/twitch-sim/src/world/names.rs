//! Fixed vocabularies the world model and the chat generator draw from.

/// Login building blocks (ASCII only, no digits: a numeric suffix keeps logins unique).
pub(crate) const ADJECTIVES: &[&str] = &[
    "sneaky", "happy", "dark", "tiny", "mega", "lazy", "swift", "cozy", "salty", "lucky", "crispy",
    "silent", "wild", "frozen", "golden", "pixel", "retro", "cosmic", "spicy", "sleepy", "noble",
    "rapid", "grumpy", "mystic",
];
/// Login building blocks.
pub(crate) const NOUNS: &[&str] = &[
    "fox", "panda", "gamer", "wizard", "tiger", "noodle", "otter", "knight", "ninja", "potato",
    "falcon", "cactus", "golem", "pirate", "raccoon", "sniper", "bard", "dragon", "kiwi", "moose",
    "yeti", "lol", "tv", "plays",
];
/// Localised display names (Twitch allows these when the login is ASCII).
pub(crate) const CJK_NAMES: &[&str] = &[
    "しずく",
    "ゆっくり実況",
    "たぬき",
    "さくら",
    "ねこまる",
    "김치맨",
    "한국어방송",
    "별빛",
    "하늘",
    "도깨비",
    "小龙",
    "熊猫君",
    "Ñandú",
    "Größe",
];
/// (game_id, game_name)
pub(crate) const GAMES: &[(&str, &str)] = &[
    ("509658", "Just Chatting"),
    ("21779", "League of Legends"),
    ("32982", "Grand Theft Auto V"),
    ("33214", "Fortnite"),
    ("516575", "VALORANT"),
    ("27471", "Minecraft"),
    ("32399", "Counter-Strike"),
    ("29595", "Dota 2"),
    ("512710", "Call of Duty: Warzone"),
    ("18122", "World of Warcraft"),
    ("491931", "Escape from Tarkov"),
    ("26936", "Music"),
    ("509660", "Art"),
    ("511224", "Apex Legends"),
    ("1469308723", "Software and Game Development"),
    ("490100", "Lost Ark"),
];
/// (language, weight)
pub(crate) const LANGUAGES: &[(&str, u32)] = &[
    ("en", 50),
    ("es", 10),
    ("ja", 8),
    ("ko", 6),
    ("pt", 6),
    ("de", 5),
    ("fr", 5),
    ("ru", 5),
    ("zh", 3),
    ("other", 2),
];
/// Stream title templates; `{g}` is the game name.
pub(crate) const TITLES: &[&str] = &[
    "!drops {g} grind all day",
    "chill {g} w/ chat 🎮",
    "RANKED {g} | !socials",
    "初見さん歓迎！{g}",
    "오늘도 {g} 방송 합니다",
    "{g} speedrun attempts — PB or bed",
    "day 42 of {g} ❤️",
    "Just vibing",
];
/// Stream tags.
pub(crate) const TAGS: &[&str] = &[
    "English",
    "NoBackseating",
    "Chill",
    "Competitive",
    "日本語",
    "한국어",
    "Español",
    "Speedrun",
    "LGBTQIAPlus",
    "Casual",
];

/// Chat words (some non-ASCII, some emoji, one with `;` and `\` to exercise escaping).
pub(crate) const WORDS: &[&str] = &[
    "lol",
    "gg",
    "nice",
    "what",
    "is",
    "that",
    "the",
    "play",
    "wow",
    "no",
    "way",
    "chat",
    "bro",
    "clip",
    "it",
    "insane",
    "true",
    "real",
    "W",
    "L",
    "based",
    "hello",
    "again",
    "monkaS",
    "omg",
    "first",
    "time",
    "here",
    "love",
    "this",
    "stream",
    "草",
    "ㅋㅋㅋ",
    "すごい",
    "대박",
    "😂",
    "🔥",
    "❤️",
    "👀",
    "lol;",
    "¯\\_(ツ)_/¯",
    "@everyone",
    "!drops",
    "hola",
    "xd",
];

/// Global emotes: (id, code).
pub(crate) const GLOBAL_EMOTES: &[(&str, &str)] = &[
    ("25", "Kappa"),
    ("305954156", "PogChamp"),
    ("425618", "LUL"),
    ("41", "Kreygasm"),
    ("354", "4Head"),
    ("86", "BibleThump"),
    ("245", "ResidentSleeper"),
    ("58765", "NotLikeThis"),
    ("64138", "SeemsGood"),
    ("30259", "HeyGuys"),
    ("81274", "VoHiYo"),
    ("58127", "CoolCat"),
];

/// Chat name colours (Twitch's default palette).
pub(crate) const COLORS: &[&str] = &[
    "#FF0000", "#0000FF", "#008000", "#B22222", "#FF7F50", "#9ACD32", "#FF4500", "#2E8B57",
    "#DAA520", "#D2691E", "#5F9EA0", "#1E90FF", "#FF69B4", "#8A2BE2", "#00FF7F",
];
