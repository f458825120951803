//! Finding `@mentions` in message text.
//!
//! A mention is `@` followed by an agent's id or display name, matched
//! case-insensitively in any script (`@老邢`, `@Code Reviewer`). The longest
//! known name wins. An `@` inside a word (`x@example.com`) or after a URL
//! character (`https://host/@user`) is not a mention. A name nobody has
//! becomes an "unknown" mention: reported to the sender, stored nowhere.

use std::collections::HashMap;

/// Every agent's id and display name, folded for matching.
#[derive(Debug, Default)]
pub struct Directory {
    /// Candidate keys by their first folded character.
    by_first_char: HashMap<char, Vec<Key>>,
    /// The keys each agent currently has, to drop them on rename.
    keys_of: HashMap<String, Vec<Vec<char>>>,
    /// Agents by folded id (two ids may fold alike), so that checking a
    /// new name against every id does not scan a bucket: on a big hub one
    /// bucket can hold thousands of ids with a common prefix, and every
    /// register checks.
    id_owners: HashMap<Vec<char>, Vec<String>>,
}

#[derive(Debug)]
struct Key {
    folded: Vec<char>,
    agent_id: String,
    /// An id key beats a name key of the same length.
    is_id: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Agent ids mentioned, first mention first, each once.
    pub agents: Vec<String>,
    /// Names that matched nobody, as written, each once.
    pub unknown: Vec<String>,
}

fn fold(text: &str) -> Vec<char> {
    text.chars().flat_map(char::to_lowercase).collect()
}

impl Directory {
    /// Adds or renames an agent.
    pub fn upsert(&mut self, agent_id: &str, name: &str) {
        let mut keys = vec![fold(agent_id)];
        let name = fold(name.trim());
        if !name.is_empty() && !keys.contains(&name) {
            keys.push(name);
        }
        // Every register lands here; most change nothing, and removing
        // costs a scan of the agent's buckets.
        if self.keys_of.get(agent_id) == Some(&keys) {
            return;
        }
        self.remove(agent_id);
        self.id_owners
            .entry(keys[0].clone())
            .or_default()
            .push(agent_id.to_owned());
        for (index, key) in keys.iter().enumerate() {
            self.by_first_char.entry(key[0]).or_default().push(Key {
                folded: key.clone(),
                agent_id: agent_id.to_owned(),
                is_id: index == 0,
            });
        }
        self.keys_of.insert(agent_id.to_owned(), keys);
    }

    fn remove(&mut self, agent_id: &str) {
        let keys = self.keys_of.remove(agent_id).unwrap_or_default();
        if let Some(id_key) = keys.first() {
            if let Some(owners) = self.id_owners.get_mut(id_key) {
                owners.retain(|owner| owner != agent_id);
                if owners.is_empty() {
                    self.id_owners.remove(id_key);
                }
            }
        }
        for key in keys {
            if let Some(bucket) = self.by_first_char.get_mut(&key[0]) {
                bucket.retain(|k| k.agent_id != agent_id);
            }
        }
    }

    /// Another agent whose id folds to the same text as `name`: a display
    /// name must not pass for someone else's id.
    pub fn id_owner_other_than(&self, agent_id: &str, name: &str) -> Option<String> {
        let folded = fold(name.trim());
        self.id_owners
            .get(&folded)?
            .iter()
            .find(|owner| *owner != agent_id)
            .cloned()
    }

    pub fn resolve(&self, text: &str) -> Resolved {
        let mut resolved = Resolved::default();
        let chars: Vec<char> = text.chars().collect();
        let mut index = 0;
        while index < chars.len() {
            if chars[index] != '@' || !starts_mention(index.checked_sub(1).map(|i| chars[i])) {
                index += 1;
                continue;
            }
            let rest = &chars[index + 1..];
            match self.longest_match(rest) {
                Some((agent_ids, length)) => {
                    for agent_id in agent_ids {
                        if !resolved.agents.contains(&agent_id) {
                            resolved.agents.push(agent_id);
                        }
                    }
                    index += 1 + length;
                }
                None => {
                    let word = unknown_word(rest);
                    index += 1 + word.chars().count();
                    if !word.is_empty() && !resolved.unknown.contains(&word) {
                        resolved.unknown.push(word);
                    }
                }
            }
        }
        resolved
    }

    /// The agents whose key is the longest prefix of `rest` ending at a
    /// word boundary, and how many characters of `rest` it covers. An id
    /// names one agent and beats names; a display name several agents
    /// share (one persona on two machines, say) reaches them all.
    fn longest_match(&self, rest: &[char]) -> Option<(Vec<String>, usize)> {
        let first = rest.first()?.to_lowercase().next()?;
        let bucket = self.by_first_char.get(&first)?;
        let matches: Vec<(&Key, usize)> = bucket
            .iter()
            .filter_map(|key| matched_length(rest, &key.folded).map(|length| (key, length)))
            .collect();
        let longest = matches.iter().map(|(_, length)| *length).max()?;
        let best: Vec<&Key> = matches
            .into_iter()
            .filter(|(_, length)| *length == longest)
            .map(|(key, _)| key)
            .collect();
        let ids: Vec<String> = match best.iter().find(|key| key.is_id) {
            Some(id) => vec![id.agent_id.clone()],
            None => best.iter().map(|key| key.agent_id.clone()).collect(),
        };
        Some((ids, longest))
    }
}

/// Whether an `@` after `previous` can start a mention.
fn starts_mention(previous: Option<char>) -> bool {
    match previous {
        None => true,
        Some(c) => {
            !(c.is_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '+' | '=' | '%'))
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// Scripts written without spaces between words: a name in them may be
/// followed directly by more text (`@老邢你好`).
fn is_unspaced_script(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF      // Thai, Lao
        | 0x2E80..=0x9FFF    // CJK radicals, kana, CJK ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x3FFFF) // CJK extensions
}

/// How many characters of `text` match the folded `key`, if it matches up to
/// a word boundary.
fn matched_length(text: &[char], key: &[char]) -> Option<usize> {
    let mut key_index = 0;
    let mut text_index = 0;
    while key_index < key.len() {
        let c = *text.get(text_index)?;
        for folded in c.to_lowercase() {
            if key.get(key_index) != Some(&folded) {
                return None;
            }
            key_index += 1;
        }
        text_index += 1;
    }
    let at_boundary = match text.get(text_index) {
        None => true,
        Some(&next) => {
            !is_word_char(next)
                || is_unspaced_script(next)
                || key.last().copied().is_some_and(is_unspaced_script)
        }
    };
    at_boundary.then_some(text_index)
}

/// The word after an `@` that matched nobody, without trailing punctuation.
fn unknown_word(rest: &[char]) -> String {
    let word: String = rest
        .iter()
        .take_while(|c| is_word_char(**c) || **c == '.')
        .collect();
    word.trim_end_matches(['.', '-']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        let mut directory = Directory::default();
        directory.upsert("clawdbot-macbook", "MacBook Bot");
        directory.upsert("xing", "老邢");
        directory.upsert("rev", "Code Reviewer");
        directory.upsert("bob", "Bob");
        directory
    }

    fn agents(text: &str) -> Vec<String> {
        directory().resolve(text).agents
    }

    #[test]
    fn ids_and_names_case_insensitive() {
        assert_eq!(agents("hi @clawdbot-macbook"), ["clawdbot-macbook"]);
        assert_eq!(agents("hi @macbook bot, deploy"), ["clawdbot-macbook"]);
        assert_eq!(agents("@BOB and @bob"), ["bob"]);
        assert_eq!(agents("ask @Code Reviewer please"), ["rev"]);
    }

    #[test]
    fn unicode_names() {
        assert_eq!(agents("@老邢 你好"), ["xing"]);
        assert_eq!(agents("@老邢你好"), ["xing"]);
    }

    #[test]
    fn not_in_emails_or_urls() {
        assert!(agents("mail bob@example.com").is_empty());
        assert!(agents("see https://example.com/@bob").is_empty());
        assert!(directory().resolve("x@bob").unknown.is_empty());
    }

    #[test]
    fn word_boundaries() {
        assert!(agents("@bobby").is_empty());
        assert_eq!(agents("(@bob)"), ["bob"]);
        assert_eq!(agents("@bob."), ["bob"]);
    }

    #[test]
    fn unknown_names_are_reported() {
        let resolved = directory().resolve("@nobody and @bob and @Nobody.");
        assert_eq!(resolved.agents, ["bob"]);
        assert_eq!(resolved.unknown, ["nobody", "Nobody"]);
    }

    #[test]
    fn an_id_beats_a_name_that_spells_it() {
        let mut directory = directory();
        directory.upsert("mallory", "bob");
        directory.upsert("bob", "Bob");
        assert_eq!(directory.resolve("@bob").agents, ["bob"]);
        assert_eq!(
            directory.id_owner_other_than("mallory", "BOB"),
            Some("bob".into())
        );
        assert_eq!(directory.id_owner_other_than("bob", "Bob"), None);
        assert_eq!(directory.id_owner_other_than("xing", "老邢"), None);
    }

    #[test]
    fn a_shared_display_name_reaches_every_agent_with_it() {
        let mut directory = directory();
        directory.upsert("xing-mac", "老邢");
        assert_eq!(directory.resolve("@老邢 hi").agents, ["xing", "xing-mac"]);
        assert_eq!(directory.resolve("@xing-mac hi").agents, ["xing-mac"]);
    }

    #[test]
    fn rename_drops_the_old_name() {
        let mut directory = directory();
        directory.upsert("rev", "Second Opinion");
        assert!(directory.resolve("@Code Reviewer").agents.is_empty());
        assert_eq!(directory.resolve("@second opinion").agents, ["rev"]);
    }

    #[test]
    fn ids_that_fold_alike_are_both_owners() {
        let mut directory = directory();
        directory.upsert("Bob", "Robert");
        assert_eq!(
            directory.id_owner_other_than("bob", "BOB"),
            Some("Bob".into())
        );
        assert_eq!(
            directory.id_owner_other_than("Bob", "bob"),
            Some("bob".into())
        );
        // Registering again unchanged, then renaming, keeps the id index
        // right.
        directory.upsert("Bob", "Robert");
        directory.upsert("Bob", "Rob");
        assert!(directory.id_owner_other_than("mallory", "bob").is_some());
        assert_eq!(directory.resolve("@rob").agents, ["Bob"]);
        assert!(directory.resolve("@Robert").agents.is_empty());
    }
}
