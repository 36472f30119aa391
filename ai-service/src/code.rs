//! Getting code out of a model's Markdown: the fenced block for the requested language, without
//! its fences, and the prose around it.

use crate::language::Language;

/// Code and the prose that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The chosen code block, or the whole text when there is no block.
    pub code: String,
    /// Text outside the code blocks.
    pub explanation: String,
}

struct Block {
    info: String,
    content: String,
}

/// Picks the block tagged with `language` (or untagged, or the first one) from `text`.
/// A block left open (answer cut at `max_tokens`) runs to the end.
pub fn extract(text: &str, language: Language) -> Extracted {
    let mut blocks: Vec<Block> = Vec::new();
    let mut prose: Vec<&str> = Vec::new();
    let mut open: Option<(char, usize, Block)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            Some((ch, len, block)) => {
                let t = trimmed.trim_end();
                if t.len() >= *len && t.chars().all(|c| c == *ch) {
                    let (_, _, block) = open.take().expect("open block");
                    blocks.push(block);
                } else {
                    block.content.push_str(line);
                    block.content.push('\n');
                }
            }
            None => match fence_start(trimmed) {
                Some((ch, len, info)) => {
                    open = Some((
                        ch,
                        len,
                        Block {
                            info,
                            content: String::new(),
                        },
                    ))
                }
                None => prose.push(line),
            },
        }
    }
    if let Some((_, _, block)) = open {
        blocks.push(block);
    }
    let explanation = prose.join("\n").trim().to_string();
    let tag = |b: &Block| {
        b.info
            .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
            .next()
            .and_then(Language::parse)
    };
    let chosen = blocks
        .iter()
        .find(|b| tag(b) == Some(language))
        .or_else(|| blocks.iter().find(|b| b.info.is_empty()))
        .or_else(|| blocks.first());
    match chosen {
        Some(block) => Extracted {
            code: block.content.trim_end_matches('\n').to_string(),
            explanation,
        },
        None => Extracted {
            code: text.trim().to_string(),
            explanation: String::new(),
        },
    }
}

fn fence_start(line: &str) -> Option<(char, usize, String)> {
    let ch = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = line.chars().take_while(|c| *c == ch).count();
    if len < 3 {
        return None;
    }
    let info = line[len..].trim();
    // A backtick fence's info string cannot contain backticks (CommonMark).
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some((ch, len, info.to_ascii_lowercase()))
}

/// A backtick fence longer than any backtick run inside `code`, so the code cannot close it.
pub fn fence_for(code: &str) -> String {
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(name: &str) -> Language {
        Language::parse(name).unwrap()
    }

    #[test]
    fn picks_the_block_of_the_requested_language() {
        let text = "Install it:\n```bash\npip install x\n```\nThen:\n```py\nimport x\nprint(x)\n```\nDone.";
        let e = extract(text, lang("python"));
        assert_eq!(e.code, "import x\nprint(x)");
        assert_eq!(e.explanation, "Install it:\nThen:\nDone.");
    }

    #[test]
    fn without_fences_the_whole_text_is_code_and_open_fences_run_to_the_end() {
        assert_eq!(
            extract("  fn main() {}\n", lang("rust")).code,
            "fn main() {}"
        );
        assert_eq!(
            extract("```rust\nfn main() {", lang("rust")).code,
            "fn main() {"
        );
    }

    #[test]
    fn fence_outgrows_backticks_in_code() {
        assert_eq!(fence_for("let s = \"```\";"), "````");
        assert_eq!(fence_for("x"), "```");
    }
}
