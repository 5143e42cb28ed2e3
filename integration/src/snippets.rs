//! The configuration snippets users copy from `docs/`, read from the Markdown itself so the
//! tests run exactly what the docs show (a doc edit that breaks a snippet breaks a test).
//!
//! A snippet is the fenced code block right after a `<!-- snippet: NAME -->` line.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// `docs/DOC` in the workspace.
pub fn doc_path(doc: &str) -> PathBuf {
    husk_tests::workspace_root().join("docs").join(doc)
}

/// The text of snippet `name` in `docs/DOC` (without the fences).
pub fn snippet(doc: &str, name: &str) -> Result<String> {
    let path = doc_path(doc);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    extract(&text, name).with_context(|| format!("in {}", path.display()))
}

/// Finds snippet `name` in Markdown `text`.
pub fn extract(text: &str, name: &str) -> Result<String> {
    let marker = format!("<!-- snippet: {name} -->");
    let mut lines = text.lines().skip_while(|l| l.trim() != marker);
    if lines.next().is_none() {
        bail!("no `{marker}` line");
    }
    let Some(fence) = lines.next().map(str::trim).filter(|l| l.starts_with("```")) else {
        bail!("`{marker}` is not followed by a fenced code block");
    };
    // The closing fence is at least as long as the opening one (CommonMark).
    let ticks = fence.chars().take_while(|c| *c == '`').count();
    let mut body = String::new();
    for line in lines {
        let t = line.trim();
        if t.len() >= ticks && t.chars().all(|c| c == '`') {
            return Ok(body);
        }
        body.push_str(line);
        body.push('\n');
    }
    bail!("the code block after `{marker}` is not closed")
}

#[cfg(test)]
mod tests {
    use super::extract;

    #[test]
    fn extracts_the_block_after_the_marker() {
        let md = "intro\n<!-- snippet: a -->\n```json\n{\"x\": 1}\n```\n\n<!-- snippet: b -->\n````toml\nk = \"```\"\n````\n";
        assert_eq!(extract(md, "a").expect("a"), "{\"x\": 1}\n");
        assert_eq!(extract(md, "b").expect("b"), "k = \"```\"\n");
        assert!(extract(md, "c").is_err());
        assert!(extract("<!-- snippet: d -->\ntext\n", "d").is_err());
        assert!(extract("<!-- snippet: e -->\n```\nopen\n", "e").is_err());
    }
}
