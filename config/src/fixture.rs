//! Test fixture (feature `test-fixtures`, for the workspace's tests only): the text of a valid
//! node configuration that a test changes section by section, so that each test states only
//! what it varies. Not for production: nothing here is validated until the text is parsed.

use std::fmt;

/// A node configuration file's text. [`NodeConfigText::new`] is the smallest valid one (a
/// managed node `node_1` on the file server `files.example.com`, one token secret); `set`,
/// `remove` and `lines` change it. Sections and keys keep the order they were first given in.
#[derive(Debug, Clone)]
pub struct NodeConfigText {
    sections: Vec<Section>,
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    /// `(key, value)`; the key is `None` for lines given whole with [`NodeConfigText::lines`].
    entries: Vec<(Option<String>, String)>,
}

/// The token secret of [`NodeConfigText::new`].
pub const TOKEN_SECRET: &str = "0123456789abcdef0123456789abcdef";

impl Default for NodeConfigText {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeConfigText {
    /// The smallest valid configuration; every other key has its default.
    pub fn new() -> Self {
        Self {
            sections: Vec::new(),
        }
        .set("node", "id", "node_1")
        .set("node", "public_url", "https://mft1.example.com")
        .set("file_server", "name", "fs_1")
        .set("file_server", "host", "files.example.com")
        .set("file_server", "user", "mft")
        .set("file_server", "directory", "/srv/mft/node_1")
        .set(
            "file_server",
            "host_key",
            "files.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",
        )
        .set("http", "token_secrets", vec![TOKEN_SECRET])
    }

    /// Sets `key` in `[section]` to `value`, in its place if already set, else last.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        let value = value.into().to_string();
        let entries = self.section(section);
        match entries.iter_mut().find(|(k, _)| k.as_deref() == Some(key)) {
            Some(entry) => entry.1 = value,
            None => entries.push((Some(key.to_owned()), value)),
        }
        self
    }

    /// Leaves `key` out of `[section]`.
    pub fn remove(mut self, section: &str, key: &str) -> Self {
        self.section(section)
            .retain(|(k, _)| k.as_deref() != Some(key));
        self
    }

    /// Appends `text` (whole TOML lines, as a test writes them) to `[section]`.
    pub fn lines(mut self, section: &str, text: &str) -> Self {
        let text = text.trim_end();
        if !text.is_empty() {
            self.section(section).push((None, text.to_owned()));
        }
        self
    }

    /// The configuration text.
    pub fn text(&self) -> String {
        self.to_string()
    }

    fn section(&mut self, name: &str) -> &mut Vec<(Option<String>, String)> {
        let at = match self.sections.iter().position(|s| s.name == name) {
            Some(at) => at,
            None => {
                self.sections.push(Section {
                    name: name.to_owned(),
                    entries: Vec::new(),
                });
                self.sections.len() - 1
            }
        };
        &mut self.sections[at].entries
    }
}

impl fmt::Display for NodeConfigText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, section) in self.sections.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "[{}]", section.name)?;
            for (key, value) in &section.entries {
                match key {
                    Some(key) => writeln!(f, "{key} = {value}")?,
                    None => writeln!(f, "{value}")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeConfig;

    #[test]
    fn the_default_text_is_a_valid_configuration() {
        let c = NodeConfig::parse(&NodeConfigText::new().text()).unwrap();
        assert_eq!(
            (c.node.id.as_str(), c.file_server.host.as_str()),
            ("node_1", "files.example.com")
        );
        assert_eq!(c.http.token_secrets, [TOKEN_SECRET]);
    }

    #[test]
    fn set_replaces_in_place_and_appends_new_keys_and_sections() {
        let text = NodeConfigText::new()
            .set("node", "id", "node_2")
            .set("node", "transfer_mode", "peer-to-peer")
            .set("fsd", "keepalive_secs", 2)
            .remove("file_server", "user")
            .lines("http", "max_file_size = 0\n")
            .text();
        assert!(
            text.starts_with("[node]\nid = \"node_2\"\npublic_url = \"https://mft1.example.com\"\ntransfer_mode = \"peer-to-peer\"\n\n[file_server]\n"),
            "{text}"
        );
        assert!(!text.contains("user ="), "{text}");
        assert!(
            text.ends_with("max_file_size = 0\n\n[fsd]\nkeepalive_secs = 2\n"),
            "{text}"
        );
    }
}
