//! The README's offline section, read as a user reads it: its blocks, the launch commands,
//! the ports the calls name.

use crate::processes::LOOPBACK;

/// The README, as committed (recompiled with it).
const README: &str = include_str!("../../README.md");

/// The README's section `## Try it offline...`, up to the next `## ` heading.
pub fn offline_section() -> &'static str {
    let start = README
        .find("\n## Try it offline")
        .expect("a \"Try it offline\" section")
        + 1;
    let rest = &README[start..];
    let end = rest[1..].find("\n## ").map_or(rest.len(), |end| end + 1);
    &rest[..end]
}

/// The first fenced block of `lang` after `heading` in `text`.
pub fn fenced<'a>(text: &'a str, heading: &str, lang: &str) -> &'a str {
    let after = &text[text.find(heading).unwrap_or_else(|| panic!("no {heading:?}"))..];
    let open = format!("```{lang}\n");
    let start = after
        .find(&open)
        .unwrap_or_else(|| panic!("no {lang} block after {heading:?}"))
        + open.len();
    let length = after[start..].find("```").expect("a closed block");
    &after[start..start + length]
}

/// The server port the README's calls name (all of them the same).
pub fn readme_port(section: &str) -> u16 {
    let prefix = format!("http://{LOOPBACK}:");
    let mut ports: Vec<&str> = section
        .split(&prefix)
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    // The launch block names the simulator's port too.
    let launch = fenced(section, "## Try it offline", "sh");
    ports.retain(|port| !launch.contains(&format!(":{port}")));
    let [port] = ports.as_slice() else {
        panic!("the calls name one server port: {ports:?}");
    };
    port.parse().unwrap()
}

/// One command of the launch block: `[NAME=VALUE ...] cargo run --release [-p PACKAGE] [-- ARGS]`.
#[derive(Debug)]
pub struct Launch {
    /// The variables set before it.
    pub env: Vec<(String, String)>,
    /// The package run (`None`: the server).
    pub package: Option<String>,
    /// The arguments after `--`.
    pub args: Vec<String>,
}

/// The commands of the launch block, one a line (a trailing `# comment` dropped).
pub fn launches(block: &str) -> Vec<Launch> {
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let command = line.find(" #").map_or(line, |comment| &line[..comment]);
            let words: Vec<&str> = command.split_whitespace().collect();
            let assignments = words
                .iter()
                .take_while(|word| {
                    word.split_once('=')
                        .is_some_and(|(name, _)| name.starts_with("HAILUO_"))
                })
                .count();
            let env = words[..assignments]
                .iter()
                .filter_map(|word| word.split_once('='))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            let rest = &words[assignments..];
            assert!(
                rest.starts_with(&["cargo", "run", "--release"]),
                "a launch command this test does not know (teach it): {line}"
            );
            let (package, rest) = match rest.get(3..5) {
                Some(["-p", package]) => (Some((*package).to_owned()), &rest[5..]),
                _ => (None, &rest[3..]),
            };
            let args = match rest.split_first() {
                None => Vec::new(),
                Some((&"--", args)) => args.iter().map(|arg| (*arg).to_owned()).collect(),
                Some(_) => panic!("arguments to a launch command follow `--`: {line}"),
            };
            Launch { env, package, args }
        })
        .collect()
}

/// The value after `option` in `args`.
pub fn option_value(args: &[String], option: &str) -> String {
    let at = args.iter().position(|arg| arg == option);
    at.and_then(|at| args.get(at + 1))
        .unwrap_or_else(|| panic!("no {option} in {args:?}"))
        .clone()
}

/// Every value after `option` in `text`.
pub fn option_values(text: &str, option: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == option)
        .map(|pair| pair[1].to_owned())
        .collect()
}
