//! The keys [`Settings`] knows, learnt from its types, and the keys a file or a `HAILUO_*`
//! variable gives that none of them is: each named with where it was set and the nearest
//! known key. Every settings struct denies unknown fields, so serde's own error lists a
//! struct's keys; a struct is asked for them by extracting the embedded defaults with one
//! key added under it. A field added to a settings struct is thereby known, with no list to
//! keep.

use std::collections::HashMap;
use std::fmt;

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Tag, Value};
use figment::{Figment, Provider};

use super::{DEFAULT_CONFIG, Dialect, Settings};

/// The environment variables that set keys: `HAILUO_` and the key path, its parts joined by `__`.
const ENV_PREFIX: &str = "HAILUO_";
const ENV_SPLIT: &str = "__";

/// The `HAILUO_*` variables read by something other than the settings: the configuration
/// file's name (`--config`) and `doctor`'s token.
const OTHER_VARIABLES: [&str; 2] = ["HAILUO_CONFIG", "HAILUO_TOKEN"];
/// The prefixes of other programs' `HAILUO_*` variables: the simulator's (`hailuo-sim`, and
/// the benchmark's path to it).
const OTHER_PREFIXES: [&str; 1] = ["HAILUO_SIM_"];

/// The key added under a struct to learn its keys: no field can have this name.
const PROBE: &str = "?";

/// Whether the variable `name` is read by something other than the settings.
pub fn is_other_variable(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    OTHER_VARIABLES.contains(&name.as_str()) || OTHER_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// The provider of the `HAILUO_*` variables that set keys: `HAILUO_SERVER__PORT` sets
/// `server.port`.
pub(super) fn environment() -> Env {
    Env::prefixed(ENV_PREFIX)
        .split(ENV_SPLIT)
        .filter(|key| !is_other_variable(&variable_of(&[key.as_str()])))
}

/// The variable that sets the key whose parts are `parts`.
pub(super) fn variable_of<S: AsRef<str>>(parts: &[S]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|part| part.as_ref().replace('.', ENV_SPLIT).to_ascii_uppercase())
        .collect();
    format!("{ENV_PREFIX}{}", parts.join(ENV_SPLIT))
}

/// What the settings' types make of the value at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// A struct, with its keys: any other key under it is unknown.
    Struct(&'static [&'static str]),
    /// A map whose keys are the user's (the voice tables, the headers, the profile's query
    /// values): any key is known.
    Map,
    /// A value.
    Leaf,
}

/// What the types make of each path, asked once per path.
struct Shapes {
    /// The embedded defaults, parsed once.
    defaults: Figment,
    nodes: HashMap<Vec<String>, Node>,
}

impl Shapes {
    fn new() -> Self {
        Self {
            defaults: Figment::from(Toml::string(DEFAULT_CONFIG)).join(Toml::string(Dialect::default().embedded())),
            nodes: HashMap::new(),
        }
    }

    fn at(&mut self, path: &[String]) -> Node {
        if let Some(node) = self.nodes.get(path) {
            return *node;
        }
        let node = match self.defaults.find_value(&path.join(".")) {
            // The defaults hold a value there: a value, without asking the types.
            Ok(value) if !path.is_empty() && value.as_dict().is_none() => Node::Leaf,
            _ => probe(&self.defaults, path),
        };
        self.nodes.insert(path.to_vec(), node);
        node
    }

    /// Every key the types know, as paths, in the types' order: a struct's keys and,
    /// below each, its own.
    fn known(&mut self) -> Vec<Vec<String>> {
        let mut known = Vec::new();
        let mut pending = vec![Vec::new()];
        while let Some(path) = pending.pop() {
            if let Node::Struct(fields) = self.at(&path) {
                let children: Vec<Vec<String>> = fields.iter().map(|field| child(&path, field)).collect();
                known.extend(children.iter().cloned());
                pending.extend(children.into_iter().rev());
            }
        }
        known
    }
}

/// Asks the types what `path` is: `defaults` with the key [`PROBE`] added under it extract
/// without error under a map, fail naming the probe as an unknown field under a struct, and
/// fail otherwise under a value.
fn probe(defaults: &Figment, path: &[String]) -> Node {
    let key: Vec<&str> = path.iter().map(String::as_str).chain([PROBE]).collect();
    let probed = defaults.clone().merge(Serialized::default(&key.join("."), PROBE));
    let Err(errors) = probed.extract::<Settings>() else {
        return Node::Map;
    };
    errors
        .into_iter()
        .find_map(|error| match error.kind {
            // The error's path ends with the unknown key itself.
            Kind::UnknownField(name, fields) if name == PROBE && error.path == key => Some(Node::Struct(fields)),
            _ => None,
        })
        .unwrap_or(Node::Leaf)
}

fn child(path: &[String], key: &str) -> Vec<String> {
    let mut child = path.to_vec();
    child.push(key.to_owned());
    child
}

/// A key no setting has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key's parts, as given (`["server", "prot"]`).
    key: Vec<String>,
    /// Where it was set.
    origin: Origin,
    /// The nearest known key, when one is near.
    nearest: Option<Vec<String>>,
    /// Whether the nearest key differs in the variable's separators (`_` for `__`).
    separators: bool,
    /// The struct it was found under (empty: the top level).
    section: Vec<String>,
    /// The keys of that struct, shown when none is near.
    siblings: Vec<String>,
}

/// Where an unknown key was set.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    /// By this environment variable.
    Variable(String),
    /// In this file (or other source).
    Source(String),
}

/// A key under a struct that the struct does not have, and the leaves under it (the key
/// itself when it holds a value), each with the tag of the value that set it.
struct Stray {
    node: Vec<String>,
    leaves: Vec<(Vec<String>, Tag)>,
}

/// The keys `figment` holds that no setting has, each leaf of an unknown table on its own;
/// empty when every key is known.
pub(super) fn unknown_keys(figment: &Figment) -> Vec<UnknownKey> {
    let Ok(Value::Dict(_, root)) = figment.find_value("") else {
        return Vec::new();
    };
    let mut shapes = Shapes::new();
    let mut strays = Vec::new();
    walk(&mut shapes, &[], &root, &mut strays);
    if strays.is_empty() {
        return Vec::new();
    }
    let environment = environment().metadata().name;
    let known = shapes.known();
    let maps: Vec<Vec<String>> = known
        .iter()
        .filter(|path| shapes.at(path) == Node::Map)
        .cloned()
        .collect();
    let mut unknown = Vec::new();
    for stray in strays {
        let parent = &stray.node[..stray.node.len() - 1];
        let siblings: Vec<String> = match shapes.at(parent) {
            Node::Struct(fields) => fields.iter().map(|field| (*field).to_owned()).collect(),
            Node::Map | Node::Leaf => Vec::new(),
        };
        let mut candidates = known.clone();
        candidates.extend(siblings.iter().map(|field| child(parent, field)));
        let nearest = nearest(&stray.node, &candidates, &maps);
        for (rest, tag) in stray.leaves {
            let key: Vec<String> = stray.node.iter().chain(&rest).cloned().collect();
            let origin = match figment.get_metadata(tag) {
                Some(metadata) if metadata.name == environment => Origin::Variable(variable_of(&key)),
                Some(metadata) => Origin::Source(
                    metadata
                        .source
                        .as_ref()
                        .map_or_else(|| metadata.name.to_string(), ToString::to_string),
                ),
                None => Origin::Source("the configuration".to_owned()),
            };
            unknown.push(UnknownKey {
                nearest: nearest
                    .as_ref()
                    .map(|nearest| nearest.iter().chain(&rest).cloned().collect()),
                separators: matches!(origin, Origin::Variable(_))
                    && nearest.as_ref().is_some_and(|nearest| nearest.len() > stray.node.len()),
                key,
                origin,
                section: parent.to_vec(),
                siblings: siblings.clone(),
            });
        }
    }
    unknown
}

/// Collects into `strays` every key of `dict` (at `path`) that the types do not have.
fn walk(shapes: &mut Shapes, path: &[String], dict: &Dict, strays: &mut Vec<Stray>) {
    let node = shapes.at(path);
    for (key, value) in dict {
        let path = child(path, key);
        match node {
            Node::Struct(fields) if !fields.contains(&key.as_str()) => {
                let mut leaves_found = Vec::new();
                leaves(&[], value, &mut leaves_found);
                strays.push(Stray {
                    node: path,
                    leaves: leaves_found,
                });
            }
            // A map's own entries are the user's; a struct may still sit under it
            // (`[upstream.profile.poll]`).
            _ => {
                if let Value::Dict(_, dict) = value {
                    walk(shapes, &path, dict, strays);
                }
            }
        }
    }
}

/// The paths (below `path`) of the values under `value`, with their tags.
fn leaves(path: &[String], value: &Value, found: &mut Vec<(Vec<String>, Tag)>) {
    match value {
        Value::Dict(_, dict) if !dict.is_empty() => {
            for (key, value) in dict {
                leaves(&child(path, key), value, found);
            }
        }
        _ => found.push((path.to_vec(), value.tag())),
    }
}

/// A key's parts as one lowercase string with `_` between them: `HAILUO_UPSTREAM_BASE_URL`
/// gives `upstream_base_url` as one part, `upstream.base_url` the same as two.
fn flat<S: AsRef<str>>(parts: &[S]) -> String {
    let parts: Vec<String> = parts.iter().map(|part| part.as_ref().to_ascii_lowercase()).collect();
    parts.join("_")
}

/// The known key nearest to `key`: the same but for its separators; else, when `key` begins
/// with a map's name (`upstream_profile_...`) but not with its parts, the map's key of the
/// rest; else the fewest edits apart (within a third of its length), or one that begins
/// with `key`.
fn nearest(key: &[String], known: &[Vec<String>], maps: &[Vec<String>]) -> Option<Vec<String>> {
    let flat_key = flat(key);
    let mut best: Option<(usize, &Vec<String>)> = None;
    for candidate in known {
        let flat_candidate = flat(candidate);
        let distance = strsim::damerau_levenshtein(&flat_key, &flat_candidate);
        let near =
            distance <= (flat_key.chars().count() / 3).max(1) || flat_candidate.starts_with(&format!("{flat_key}_"));
        if near && best.is_none_or(|(least, _)| distance < least) {
            best = Some((distance, candidate));
        }
    }
    if let Some((0, exact)) = best {
        return Some(exact.clone());
    }
    // `HAILUO_UPSTREAM_PROFILE_VERSION_CODE`: the profile's `version_code`.
    for map in maps.iter().filter(|map| !key.starts_with(map)) {
        if let Some(rest) = flat_key.strip_prefix(&format!("{}_", flat(map))) {
            let mut suggested = map.clone();
            suggested.push(rest.to_owned());
            return Some(suggested);
        }
    }
    best.map(|(_, candidate)| candidate.clone())
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown setting `{}`", self.key.join("."))?;
        match &self.origin {
            Origin::Variable(name) => write!(f, " (from {name})")?,
            Origin::Source(source) => write!(f, " (in {source})")?,
        }
        match &self.nearest {
            Some(nearest) => {
                write!(f, "; did you mean `{}`", nearest.join("."))?;
                if self.separators {
                    write!(
                        f,
                        " ({})? A variable's name separates sections and keys with a double underscore `{ENV_SPLIT}`",
                        variable_of(nearest)
                    )
                } else {
                    f.write_str("?")
                }
            }
            None if self.siblings.is_empty() => Ok(()),
            None if self.section.is_empty() => write!(f, "; the sections are {}", self.siblings.join(", ")),
            None => write!(f, "; `[{}]` has {}", self.section.join("."), self.siblings.join(", ")),
        }
    }
}
