//! The node configuration file (TOML): device classes and how to reach LVM.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::lvm::LvmOptions;

/// How a device class allocates its volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassType {
    /// Fully allocated LVs.
    Thick,
    /// Thin LVs in a thin pool.
    Thin,
}

/// One device class: a name that StorageClasses refer to, backed by a VG.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceClass {
    /// Name used in `strata.io/device-class`.
    pub name: String,
    /// Volume group that holds this class's volumes.
    pub volume_group: String,
    /// `thick` or `thin`.
    #[serde(rename = "type")]
    pub class_type: ClassType,
    /// Thin pool LV name (thin classes only).
    #[serde(default)]
    pub thin_pool: Option<String>,
    /// Bytes of the VG (or pool) never handed out to volumes.
    #[serde(default)]
    pub spare_bytes: u64,
    /// Used when a StorageClass names no device class.
    #[serde(default)]
    pub default: bool,
    /// Physical devices to `pvcreate`/`vgcreate` when the VG is missing.
    #[serde(default)]
    pub devices: Vec<PathBuf>,
    /// Thin classes: how many virtual bytes the pool may promise per byte of
    /// data space (1.0, the default, never overprovisions).
    #[serde(default)]
    pub overprovision_ratio: Option<f64>,
    /// Thin classes: the pool fullness (data or metadata, percent) at and
    /// above which new volumes and expansions are refused and the pool's
    /// volumes report an abnormal condition (default 90).
    #[serde(default)]
    pub pool_danger_percent: Option<u32>,
    /// Thin classes: grow the pool's data from free VG space when a request
    /// needs room, up to this many bytes of pool data (unset: never grow).
    #[serde(default)]
    pub pool_auto_extend_max_bytes: Option<u64>,
}

/// The overprovision ratio of a thin class when the config gives none.
pub const DEFAULT_OVERPROVISION_RATIO: f64 = 1.0;
/// The danger mark of a thin pool when the config gives none.
pub const DEFAULT_POOL_DANGER_PERCENT: u32 = 90;

impl DeviceClass {
    /// Virtual bytes a thin pool may promise per byte of data space.
    pub fn overprovision_ratio(&self) -> f64 {
        self.overprovision_ratio
            .unwrap_or(DEFAULT_OVERPROVISION_RATIO)
    }

    /// The pool's danger mark in percent (thin classes).
    pub fn pool_danger_percent(&self) -> u32 {
        self.pool_danger_percent
            .unwrap_or(DEFAULT_POOL_DANGER_PERCENT)
    }
}

/// Which LVM backend runs the commands. The default is `lvm2cmd` when it is
/// built in (benches/csi_lifecycle.rs measured it at 0.55–0.65 of the `lvm`
/// command's time per call), `cli` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The `lvm` program with JSON reports.
    Cli,
    /// liblvm2cmd in-process (needs the `lvm2cmd` build feature).
    Lvm2cmd,
}

impl Default for Backend {
    fn default() -> Self {
        if cfg!(feature = "lvm2cmd") {
            Backend::Lvm2cmd
        } else {
            Backend::Cli
        }
    }
}

impl Backend {
    /// The name used in the config file and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cli => "cli",
            Backend::Lvm2cmd => "lvm2cmd",
        }
    }
}

/// The `[lvm]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LvmConfig {
    /// `cli` (default) or `lvm2cmd`.
    #[serde(default)]
    pub backend: Backend,
    /// Options shared by both backends.
    #[serde(flatten)]
    pub options: LvmOptions,
}

/// The whole node configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Device classes; may be empty for a pod that only answers identity calls.
    #[serde(default, rename = "device_class")]
    pub device_classes: Vec<DeviceClass>,
    /// LVM access.
    #[serde(default)]
    pub lvm: LvmConfig,
    /// Most volumes the scheduler may place on this node (0: no limit).
    #[serde(default)]
    pub max_volumes: i64,
}

/// A configuration that cannot be used, with the field that is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// toml's description, with line and column.
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `device_class[1].thin_pool`.
        field: String,
        /// Why.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl NodeConfig {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parse and validate config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Check the rules the schema alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut defaults = 0;
        for (i, class) in self.device_classes.iter().enumerate() {
            let at = |f: &str| format!("device_class[{i}].{f}");
            if !crate::names::is_dns_label(&class.name) {
                return Err(invalid(
                    at("name"),
                    format!(
                        "{:?} must be a DNS label (a-z, 0-9, '-', at most 63)",
                        class.name
                    ),
                ));
            }
            if self.device_classes[..i]
                .iter()
                .any(|c| c.name == class.name)
            {
                return Err(invalid(
                    at("name"),
                    format!("{:?} is declared twice", class.name),
                ));
            }
            if !crate::names::is_lvm_name(&class.volume_group) {
                return Err(invalid(
                    at("volume_group"),
                    format!("{:?} is not a valid VG name", class.volume_group),
                ));
            }
            match (class.class_type, &class.thin_pool) {
                (ClassType::Thin, None) => {
                    return Err(invalid(at("thin_pool"), "required when type = \"thin\""));
                }
                (ClassType::Thin, Some(p)) if !crate::names::is_lvm_name(p) => {
                    return Err(invalid(
                        at("thin_pool"),
                        format!("{p:?} is not a valid LV name"),
                    ));
                }
                (ClassType::Thick, Some(_)) => {
                    return Err(invalid(
                        at("thin_pool"),
                        "only allowed when type = \"thin\"",
                    ));
                }
                _ => {}
            }
            thin_fields(class, &at)?;
            for (j, dev) in class.devices.iter().enumerate() {
                if !dev.is_absolute() {
                    return Err(invalid(
                        format!("device_class[{i}].devices[{j}]"),
                        format!("{} is not an absolute path", dev.display()),
                    ));
                }
            }
            if class.default {
                defaults += 1;
                if defaults > 1 {
                    return Err(invalid(
                        at("default"),
                        "only one device class can be the default",
                    ));
                }
            }
        }
        if self.max_volumes < 0 {
            return Err(invalid("max_volumes", "must not be negative"));
        }
        if let Some(c) = &self.lvm.options.extra_config
            && c.chars().any(char::is_whitespace)
        {
            return Err(invalid("lvm.extra_config", "must not contain whitespace"));
        }
        Ok(())
    }

    /// The thin classes whose pool is `vg`/`pool` (several classes may share one).
    pub fn classes_of_pool<'a>(
        &'a self,
        vg: &'a str,
        pool: &'a str,
    ) -> impl Iterator<Item = &'a DeviceClass> + 'a {
        self.device_classes
            .iter()
            .filter(move |c| c.volume_group == vg && c.thin_pool.as_deref() == Some(pool))
    }

    /// The class named `name`, or the default class when `name` is `None`.
    pub fn class(&self, name: Option<&str>) -> Option<&DeviceClass> {
        match name {
            Some(n) => self.device_classes.iter().find(|c| c.name == n),
            None => self.device_classes.iter().find(|c| c.default).or(
                if self.device_classes.len() == 1 {
                    self.device_classes.first()
                } else {
                    None
                },
            ),
        }
    }

    /// The distinct VGs of all classes, in config order.
    pub fn volume_groups(&self) -> Vec<String> {
        let mut vgs: Vec<String> = Vec::new();
        for c in &self.device_classes {
            if !vgs.contains(&c.volume_group) {
                vgs.push(c.volume_group.clone());
            }
        }
        vgs
    }
}

/// The thin-only fields: refused on thick classes, range-checked on thin ones.
fn thin_fields(class: &DeviceClass, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let thin = class.class_type == ClassType::Thin;
    let given = [
        ("overprovision_ratio", class.overprovision_ratio.is_some()),
        ("pool_danger_percent", class.pool_danger_percent.is_some()),
        (
            "pool_auto_extend_max_bytes",
            class.pool_auto_extend_max_bytes.is_some(),
        ),
    ];
    if let Some((field, _)) = given.iter().find(|(_, set)| *set && !thin) {
        return Err(invalid(at(field), "only allowed when type = \"thin\""));
    }
    if let Some(r) = class.overprovision_ratio
        && !(r.is_finite() && (1.0..=100.0).contains(&r))
    {
        return Err(invalid(
            at("overprovision_ratio"),
            format!("{r} must be between 1.0 (never overprovision) and 100"),
        ));
    }
    if let Some(p) = class.pool_danger_percent
        && !(1..=100).contains(&p)
    {
        return Err(invalid(
            at("pool_danger_percent"),
            format!("{p} must be a percentage from 1 to 100"),
        ));
    }
    if class.pool_auto_extend_max_bytes == Some(0) {
        return Err(invalid(
            at("pool_auto_extend_max_bytes"),
            "must be more than 0 (leave it out to never grow the pool)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[device_class]]
name = "fast"
volume_group = "strata-fast"
type = "thick"
spare_bytes = 10737418240
default = true
devices = []
[[device_class]]
name = "thin"
volume_group = "strata-fast"
type = "thin"
thin_pool = "pool0"
[lvm]
backend = "cli"
command_prefix = []
"#;

    #[test]
    fn example_parses() {
        let c = NodeConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.device_classes.len(), 2);
        assert_eq!(c.class(None).unwrap().name, "fast");
        assert_eq!(
            c.class(Some("thin")).unwrap().thin_pool.as_deref(),
            Some("pool0")
        );
        assert_eq!(c.volume_groups(), vec!["strata-fast".to_string()]);
        assert_eq!(c.lvm.backend, Backend::Cli);
        let default = NodeConfig::parse("").unwrap().lvm.backend;
        assert_eq!(default == Backend::Lvm2cmd, cfg!(feature = "lvm2cmd"));
    }

    #[test]
    fn empty_config_is_allowed() {
        let c = NodeConfig::parse("").unwrap();
        assert!(c.device_classes.is_empty());
        assert!(c.class(None).is_none());
    }

    fn err(text: &str) -> String {
        NodeConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let thin_without_pool = "[[device_class]]\nname='t'\nvolume_group='vg'\ntype='thin'\n";
        assert_eq!(
            err(thin_without_pool),
            "device_class[0].thin_pool: required when type = \"thin\""
        );
        let two_defaults = "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='thick'\ndefault=true\n[[device_class]]\nname='b'\nvolume_group='vg'\ntype='thick'\ndefault=true\n";
        assert_eq!(
            err(two_defaults),
            "device_class[1].default: only one device class can be the default"
        );
        let dup = "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='thick'\n[[device_class]]\nname='a'\nvolume_group='vg2'\ntype='thick'\n";
        assert!(err(dup).starts_with("device_class[1].name: \"a\" is declared twice"));
        let bad_vg = "[[device_class]]\nname='a'\nvolume_group='my vg'\ntype='thick'\n";
        assert!(err(bad_vg).starts_with("device_class[0].volume_group:"));
        let rel =
            "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='thick'\ndevices=['dev/sdb']\n";
        assert!(err(rel).starts_with("device_class[0].devices[0]:"));
        let unknown = "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='thick'\nsize=3\n";
        assert!(
            err(unknown).contains("unknown field `size`"),
            "{}",
            err(unknown)
        );
        let bad_type = "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='fat'\n";
        assert!(
            err(bad_type).contains("unknown variant `fat`"),
            "{}",
            err(bad_type)
        );
    }

    #[test]
    fn thin_pool_fields_are_checked_and_named() {
        let thin = "[[device_class]]\nname='t'\nvolume_group='vg'\ntype='thin'\nthin_pool='p'\n";
        let c = NodeConfig::parse(thin).unwrap();
        let class = c.class(None).unwrap();
        assert_eq!(class.overprovision_ratio(), 1.0);
        assert_eq!(class.pool_danger_percent(), 90);
        assert_eq!(class.pool_auto_extend_max_bytes, None);
        assert_eq!(c.classes_of_pool("vg", "p").count(), 1);
        assert_eq!(c.classes_of_pool("vg", "q").count(), 0);
        let full = format!(
            "{thin}overprovision_ratio=2.5\npool_danger_percent=80\npool_auto_extend_max_bytes=1073741824\n"
        );
        let c = NodeConfig::parse(&full).unwrap();
        let class = c.class(None).unwrap();
        assert_eq!(class.overprovision_ratio(), 2.5);
        assert_eq!(class.pool_danger_percent(), 80);
        assert_eq!(class.pool_auto_extend_max_bytes, Some(1 << 30));
        let cases = [
            (
                format!("{thin}overprovision_ratio=0.5\n"),
                "device_class[0].overprovision_ratio: 0.5 must be between 1.0 (never overprovision) and 100",
            ),
            (
                format!("{thin}overprovision_ratio=nan\n"),
                "device_class[0].overprovision_ratio: NaN must be between 1.0 (never overprovision) and 100",
            ),
            (
                format!("{thin}pool_danger_percent=0\n"),
                "device_class[0].pool_danger_percent: 0 must be a percentage from 1 to 100",
            ),
            (
                format!("{thin}pool_danger_percent=101\n"),
                "device_class[0].pool_danger_percent: 101 must be a percentage from 1 to 100",
            ),
            (
                format!("{thin}pool_auto_extend_max_bytes=0\n"),
                "device_class[0].pool_auto_extend_max_bytes: must be more than 0 (leave it out to never grow the pool)",
            ),
            (
                "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='thick'\npool_danger_percent=80\n"
                    .to_owned(),
                "device_class[0].pool_danger_percent: only allowed when type = \"thin\"",
            ),
            (
                "[[device_class]]\nname='a'\nvolume_group='vg'\ntype='thick'\noverprovision_ratio=2.0\n"
                    .to_owned(),
                "device_class[0].overprovision_ratio: only allowed when type = \"thin\"",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(&text), want, "{text}");
        }
        let negative = format!("{thin}pool_danger_percent=-5\n");
        assert!(
            err(&negative).contains("pool_danger_percent"),
            "{}",
            err(&negative)
        );
    }
}
