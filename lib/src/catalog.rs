//! The query catalog: the files of `queries/` (detection rules and report sections, each
//! SQL plus a YAML sidecar), embedded at build time by `build.rs`, and the structured
//! references their metadata share.
//!
//! ```yaml
//! references:
//!   mitre: [T1485]              # ATT&CK technique ids
//!   cis: ["3.7"]                # CIS AWS Foundations Benchmark recommendations
//!   pci: ["3.6.4"]              # PCI DSS v4 requirements
//!   security_hub: [KMS.3]       # AWS Security Hub controls
//!   other: ["NIST SP 800-57"]   # anything else, as text
//! ```
//!
//! A plain list of strings (the older form, e.g. `"MITRE ATT&CK T1485 Data Destruction"`)
//! is still read, sorted into the frameworks by its prefix.

use serde::{Deserialize, Serialize};

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// A compliance or threat framework that references point into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Framework {
    Mitre,
    Cis,
    Pci,
    SecurityHub,
    Other,
}

impl Framework {
    pub const ALL: [Framework; 5] = [
        Framework::Mitre,
        Framework::Cis,
        Framework::Pci,
        Framework::SecurityHub,
        Framework::Other,
    ];

    /// The key in the metadata (`mitre`, `cis`, `pci`, `security_hub`, `other`).
    pub fn key(self) -> &'static str {
        match self {
            Framework::Mitre => "mitre",
            Framework::Cis => "cis",
            Framework::Pci => "pci",
            Framework::SecurityHub => "security_hub",
            Framework::Other => "other",
        }
    }

    /// Its name for a person, which also prefixes a reference's label.
    pub fn title(self) -> &'static str {
        match self {
            Framework::Mitre => "MITRE ATT&CK",
            Framework::Cis => "CIS AWS Foundations",
            Framework::Pci => "PCI DSS",
            Framework::SecurityHub => "Security Hub",
            Framework::Other => "Other",
        }
    }

    pub fn parse(s: &str) -> Option<Framework> {
        Framework::ALL
            .into_iter()
            .find(|f| f.key() == s || f.title().eq_ignore_ascii_case(s))
    }
}

/// Where a rule or report section points in the frameworks auditors use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct References {
    /// MITRE ATT&CK technique ids (`T1485`, `T1078.004`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mitre: Vec<String>,
    /// CIS AWS Foundations Benchmark recommendation numbers (`3.8`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cis: Vec<String>,
    /// PCI DSS v4 requirement numbers (`3.6.4`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<String>,
    /// AWS Security Hub control ids (`KMS.3`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_hub: Vec<String>,
    /// Anything else, as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Structured {
    #[serde(default)]
    mitre: Vec<String>,
    #[serde(default)]
    cis: Vec<String>,
    #[serde(default)]
    pci: Vec<String>,
    #[serde(default)]
    security_hub: Vec<String>,
    #[serde(default)]
    other: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Form {
    Structured(Structured),
    Labels(Vec<String>),
}

impl<'de> Deserialize<'de> for References {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Form::deserialize(d)? {
            Form::Structured(s) => References {
                mitre: s.mitre,
                cis: s.cis,
                pci: s.pci,
                security_hub: s.security_hub,
                other: s.other,
            },
            Form::Labels(labels) => References::from_labels(&labels),
        })
    }
}

impl References {
    /// Sorts labels such as `"PCI DSS 3.7.5 (key retirement)"` into their frameworks by
    /// prefix; the id is the first word after it. Labels of no known framework go to `other`.
    pub fn from_labels(labels: &[String]) -> References {
        let mut r = References::default();
        for label in labels {
            let label = label.trim();
            let known = [
                Framework::Mitre,
                Framework::Cis,
                Framework::Pci,
                Framework::SecurityHub,
            ]
            .into_iter()
            .find_map(|f| {
                let id = label.strip_prefix(f.title())?.split_whitespace().next()?;
                Some((f, id.trim_end_matches([',', ';']).to_owned()))
            });
            match known {
                Some((f, id)) => r.ids_mut(f).push(id),
                None => r.other.push(label.to_owned()),
            }
        }
        r
    }

    /// The ids under one framework.
    pub fn ids(&self, f: Framework) -> &[String] {
        match f {
            Framework::Mitre => &self.mitre,
            Framework::Cis => &self.cis,
            Framework::Pci => &self.pci,
            Framework::SecurityHub => &self.security_hub,
            Framework::Other => &self.other,
        }
    }

    fn ids_mut(&mut self, f: Framework) -> &mut Vec<String> {
        match f {
            Framework::Mitre => &mut self.mitre,
            Framework::Cis => &mut self.cis,
            Framework::Pci => &mut self.pci,
            Framework::SecurityHub => &mut self.security_hub,
            Framework::Other => &mut self.other,
        }
    }

    pub fn is_empty(&self) -> bool {
        Framework::ALL.into_iter().all(|f| self.ids(f).is_empty())
    }

    /// Adds the ids of `other` that are not here yet.
    pub fn merge(&mut self, other: &References) {
        for f in Framework::ALL {
            for id in other.ids(f) {
                if !self.ids(f).contains(id) {
                    self.ids_mut(f).push(id.clone());
                }
            }
        }
    }

    /// One label per reference, for people: `MITRE ATT&CK T1485 Data Destruction`,
    /// `CIS AWS Foundations 3.8`, `PCI DSS 3.6.4`, `Security Hub KMS.3`.
    pub fn labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in Framework::ALL {
            for id in self.ids(f) {
                out.push(match f {
                    Framework::Other => id.clone(),
                    Framework::Mitre => match mitre_technique(id) {
                        Some(t) => format!("{} {id} {}", f.title(), t.name),
                        None => format!("{} {id}", f.title()),
                    },
                    _ => format!("{} {id}", f.title()),
                });
            }
        }
        out
    }
}

/// An ATT&CK technique: its name and the tactics it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Technique {
    pub id: &'static str,
    pub name: &'static str,
    pub tactics: &'static [&'static str],
}

/// The ATT&CK (Enterprise, cloud) techniques KMS misuse maps to.
pub const TECHNIQUES: &[Technique] = &[
    Technique {
        id: "T1005",
        name: "Data from Local System",
        tactics: &["Collection"],
    },
    Technique {
        id: "T1078",
        name: "Valid Accounts",
        tactics: &[
            "Defense Evasion",
            "Persistence",
            "Privilege Escalation",
            "Initial Access",
        ],
    },
    Technique {
        id: "T1078.004",
        name: "Valid Accounts: Cloud Accounts",
        tactics: &[
            "Defense Evasion",
            "Persistence",
            "Privilege Escalation",
            "Initial Access",
        ],
    },
    Technique {
        id: "T1098",
        name: "Account Manipulation",
        tactics: &["Persistence", "Privilege Escalation"],
    },
    Technique {
        id: "T1485",
        name: "Data Destruction",
        tactics: &["Impact"],
    },
    Technique {
        id: "T1486",
        name: "Data Encrypted for Impact",
        tactics: &["Impact"],
    },
    Technique {
        id: "T1489",
        name: "Service Stop",
        tactics: &["Impact"],
    },
    Technique {
        id: "T1526",
        name: "Cloud Service Discovery",
        tactics: &["Discovery"],
    },
    Technique {
        id: "T1530",
        name: "Data from Cloud Storage",
        tactics: &["Collection"],
    },
    Technique {
        id: "T1531",
        name: "Account Access Removal",
        tactics: &["Impact"],
    },
    Technique {
        id: "T1537",
        name: "Transfer Data to Cloud Account",
        tactics: &["Exfiltration"],
    },
    Technique {
        id: "T1550",
        name: "Use Alternate Authentication Material",
        tactics: &["Defense Evasion", "Lateral Movement"],
    },
    Technique {
        id: "T1562",
        name: "Impair Defenses",
        tactics: &["Defense Evasion"],
    },
    Technique {
        id: "T1562.008",
        name: "Impair Defenses: Disable or Modify Cloud Logs",
        tactics: &["Defense Evasion"],
    },
    Technique {
        id: "T1580",
        name: "Cloud Infrastructure Discovery",
        tactics: &["Discovery"],
    },
];

/// The technique with this id, if the catalog knows it.
pub fn mitre_technique(id: &str) -> Option<&'static Technique> {
    TECHNIQUES.iter().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_and_label_forms_read_the_same() {
        let structured: References = serde_yaml_ng::from_str(
            "mitre: [T1485]\ncis: [\"4.7\"]\npci: [\"3.7.5\"]\nsecurity_hub: [KMS.3]\n",
        )
        .expect("structured");
        let labels: References = serde_yaml_ng::from_str(
            "- MITRE ATT&CK T1485 Data Destruction\n- CIS AWS Foundations 4.7 (alarm)\n\
             - PCI DSS 3.7.5 (key retirement)\n- Security Hub KMS.3\n",
        )
        .expect("labels");
        assert_eq!(structured, labels);
        assert_eq!(
            structured.labels(),
            [
                "MITRE ATT&CK T1485 Data Destruction",
                "CIS AWS Foundations 4.7",
                "PCI DSS 3.7.5",
                "Security Hub KMS.3"
            ]
        );
        let unknown: Result<References, _> = serde_yaml_ng::from_str("nist: [AU-9]\n");
        assert!(unknown.is_err(), "an unknown framework key is an error");
        let other = References::from_labels(&["NIST SP 800-57".to_owned()]);
        assert_eq!(other.other, ["NIST SP 800-57"]);
    }

    #[test]
    fn merge_keeps_each_id_once() {
        let mut a = References {
            mitre: vec!["T1485".into()],
            ..References::default()
        };
        let b = References {
            mitre: vec!["T1485".into(), "T1098".into()],
            pci: vec!["3.6.4".into()],
            ..References::default()
        };
        a.merge(&b);
        assert_eq!(a.mitre, ["T1485", "T1098"]);
        assert_eq!(a.pci, ["3.6.4"]);
    }

    #[test]
    fn every_embedded_file_has_its_sidecar() {
        assert!(DETECTIONS.len() >= 18);
        assert!(REPORT_SECTIONS.len() >= 7);
        for (id, sql, yaml) in DETECTIONS.iter().chain(REPORT_SECTIONS) {
            assert!(!sql.trim().is_empty(), "{id}.sql is empty");
            assert!(yaml.contains("id:"), "{id}.yaml has no id");
        }
    }
}
