//! `{{Input}}` placeholders in `args` elements and `env` values.
//!
//! A template is parsed once, when the module is loaded, into literal text and input names.
//! Rendering replaces each name by the input's value in one pass: values are never parsed
//! again (a value holding `{{Other}}` stays that text), and no shell or JSON is involved, so a
//! value lands inside the one argument or variable its placeholder is in, whatever it holds.

use std::collections::BTreeMap;

use crate::error::SpecError;
use crate::names::is_valid_input_name;

/// Opens a placeholder.
pub(crate) const OPEN: &str = "{{";
const CLOSE: &str = "}}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Input(String),
}

/// A parsed `args` element or `env` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Segment>);

impl Template {
    /// Parses `text` (the value of `field`). `{{ Name }}` (spaces inside allowed) is a
    /// placeholder; a `{{` without a `}}` after it, or with anything but an input name inside,
    /// is an error. Whether the names are declared is checked by the caller ([`Self::inputs`]).
    pub(crate) fn parse(field: &str, text: &str) -> Result<Template, SpecError> {
        let malformed = || SpecError::MalformedPlaceholder {
            field: field.to_string(),
            text: text.to_string(),
        };
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + OPEN.len()..];
            let end = after.find(CLOSE).ok_or_else(malformed)?;
            let name = after[..end].trim_matches(' ');
            if !is_valid_input_name(name) {
                return Err(malformed());
            }
            segments.push(Segment::Input(name.to_string()));
            rest = &after[end + CLOSE.len()..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        Ok(Template(segments))
    }

    /// The input names used, in order (with repeats).
    pub(crate) fn inputs(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|s| match s {
            Segment::Input(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The text with every placeholder replaced by its value. Every name must be in `values`
    /// (the module checked that at load time and resolved every declared input).
    pub(crate) fn render(&self, values: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Input(n) => out.push_str(values.get(n).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("args[0]", "--msg={{Message}} and {{ N }}!").unwrap();
        assert_eq!(t.inputs().collect::<Vec<_>>(), ["Message", "N"]);
        assert_eq!(
            t.render(&values(&[("Message", "hi"), ("N", "3")])),
            "--msg=hi and 3!"
        );
        let plain = Template::parse("args[0]", "no placeholders } here }}").unwrap();
        assert_eq!(plain.inputs().count(), 0);
        assert_eq!(plain.render(&values(&[])), "no placeholders } here }}");
        assert_eq!(Template::parse("a", "").unwrap().render(&values(&[])), "");
    }

    #[test]
    fn values_are_not_expanded_again() {
        let t = Template::parse("args[0]", "{{A}}{{B}}").unwrap();
        assert_eq!(t.render(&values(&[("A", "{{B}}"), ("B", "x")])), "{{B}}x");
    }

    #[test]
    fn malformed() {
        for bad in [
            "{{",
            "{{Message",
            "{{}}",
            "{{ }}",
            "{{.Message}}",
            "{{a b}}",
            "{{1}}",
            "x{{{A}}}",
        ] {
            assert!(
                matches!(
                    Template::parse("args[1]", bad),
                    Err(SpecError::MalformedPlaceholder { .. })
                ),
                "{bad}"
            );
        }
    }
}
