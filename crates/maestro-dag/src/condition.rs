//! Node conditions: CEL expressions over `inputs` (the run's inputs) and `outputs` (the outputs of
//! the node's dependencies). False skips the node; an evaluation error fails it with the message.
//!
//! CEL support sits behind the default `cel` feature. Without it, a definition that uses a
//! condition does not validate (`invalid_condition`), so a condition is never silently ignored.

use std::fmt;

use serde_json::Value;

/// Comprehension macros (`x.map(…)`, `x.all(…)`, …) a condition may use: their costs multiply
/// when nested, so more than one could make an evaluation run for hours.
pub const MAX_COMPREHENSIONS: usize = 1;

/// How many comprehension macro calls (`.map(`, `.filter(`, `.all(`, `.exists(`,
/// `.exists_one(`, spaces allowed around the name) the expression has outside string literals.
#[cfg_attr(not(feature = "cel"), allow(dead_code))]
fn comprehension_calls(source: &str) -> usize {
    const MACROS: [&str; 5] = ["map", "filter", "all", "exists", "exists_one"];
    let b = source.as_bytes();
    let mut count = 0;
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'.' => {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let start = j;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = &source[start..j];
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && b[j] == b'(' && MACROS.contains(&name) {
                    count += 1;
                }
            }
            None => {}
        }
        i += 1;
    }
    count
}

/// A compiled condition.
pub struct Condition {
    source: String,
    #[cfg(feature = "cel")]
    program: cel::Program,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Compiles an expression, or says why it is not one.
    pub fn compile(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("condition is empty".into());
        }
        #[cfg(feature = "cel")]
        {
            // The parser is not hardened against pathological nesting; bound it first.
            let depth = source.chars().fold((0i32, 0i32), |(d, m), c| match c {
                '(' | '[' | '{' => (d + 1, m.max(d + 1)),
                ')' | ']' | '}' => (d - 1, m),
                _ => (d, m),
            });
            if depth.1 > 64 || source.len() > 4096 {
                return Err("condition is too long or too deeply nested".into());
            }
            // Comprehensions multiply: eight nested `map`s over ten elements never finish. One
            // per condition keeps the work linear in its input.
            let comprehensions = comprehension_calls(source);
            if comprehensions > MAX_COMPREHENSIONS {
                return Err(format!(
                    "condition `{source}` uses {comprehensions} comprehensions (map, filter, all, \
                     exists, exists_one); at most {MAX_COMPREHENSIONS} is allowed"
                ));
            }
            let program = std::panic::catch_unwind(|| cel::Program::compile(source))
                .map_err(|_| "condition could not be parsed".to_string())?
                .map_err(|e| {
                    format!(
                        "invalid condition `{source}`: {}",
                        first_line(&e.to_string())
                    )
                })?;
            Ok(Self {
                source: source.to_string(),
                program,
            })
        }
        #[cfg(not(feature = "cel"))]
        {
            Err(format!(
                "condition `{source}` needs maestro-dag's `cel` feature"
            ))
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition. A non-boolean result is an error.
    pub fn evaluate(&self, inputs: &Value, outputs: &Value) -> Result<bool, String> {
        #[cfg(feature = "cel")]
        {
            let mut ctx = cel::Context::default();
            ctx.add_variable("inputs", inputs)
                .map_err(|e| e.to_string())?;
            ctx.add_variable("outputs", outputs)
                .map_err(|e| e.to_string())?;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.program.execute(&ctx)
            }))
            .map_err(|_| format!("condition `{}` could not be evaluated", self.source))?;
            match result {
                Ok(cel::Value::Bool(b)) => Ok(b),
                Ok(other) => Err(format!(
                    "condition `{}` returned {:?}, not a boolean",
                    self.source,
                    other.type_of()
                )),
                Err(e) => Err(format!("condition `{}` failed: {e}", self.source)),
            }
        }
        #[cfg(not(feature = "cel"))]
        {
            let _ = (inputs, outputs);
            Err(format!(
                "condition `{}` needs maestro-dag's `cel` feature",
                self.source
            ))
        }
    }
}

#[cfg(feature = "cel")]
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(all(test, feature = "cel"))]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expr: &str, inputs: Value, outputs: Value) -> Result<bool, String> {
        Condition::compile(expr)?.evaluate(&inputs, &outputs)
    }

    #[test]
    fn reads_inputs_and_outputs() {
        let out = json!({"a": {"approved": true, "score": 0.9}});
        assert_eq!(
            check("outputs.a.approved == true", json!({}), out.clone()),
            Ok(true)
        );
        assert_eq!(
            check("outputs['a']['score'] > 0.5", json!({}), out.clone()),
            Ok(true)
        );
        assert_eq!(
            check("inputs.env == 'prod'", json!({"env": "dev"}), out),
            Ok(false)
        );
    }

    #[test]
    fn missing_keys_and_non_booleans_are_errors() {
        assert!(check("outputs.missing.flag", json!({}), json!({})).is_err());
        assert!(check("1 + 1", json!({}), json!({})).is_err());
    }

    #[test]
    fn bad_syntax_does_not_compile() {
        assert!(Condition::compile("outputs.a ==").is_err());
        assert!(Condition::compile("   ").is_err());
        assert!(Condition::compile(&"(".repeat(500)).is_err());
    }
}
