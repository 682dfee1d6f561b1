//! `nimbus new NAME --lang rust|js|python [--wasi 0.2|0.3]`: writes a new
//! app that `nimbus deploy` builds and runs as it is: its manifest (with
//! the build command), a handler, and for JavaScript and Python the WIT of
//! every Nimbus interface (`wit/app` of this repository, compiled in).

use anyhow::{Context as _, bail};
use std::path::Path;

/// A language `nimbus new` writes apps in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, built with cargo for wasm32-wasip2.
    Rust,
    /// JavaScript, built with componentize-js (npm).
    Js,
    /// Python, built with componentize-py (PyPI).
    Python,
}

/// The WASI version of the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wasi {
    /// `wasi:http/incoming-handler@0.2`.
    #[value(name = "0.2")]
    P2,
    /// `wasi:http/handler@0.3.0`.
    #[value(name = "0.3")]
    P3,
}

type Files = &'static [(&'static str, &'static str)];

macro_rules! template {
    ($($path:literal => $file:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../templates/", $file)))),*]
    };
}

const RUST2: Files = template! {
    "nimbus.toml" => "rust2/nimbus.toml",
    "Cargo.toml" => "rust2/Cargo.toml",
    "src/lib.rs" => "rust2/src/lib.rs",
    ".gitignore" => "rust2/gitignore",
};

const RUST3: Files = template! {
    "nimbus.toml" => "rust3/nimbus.toml",
    "Cargo.toml" => "rust3/Cargo.toml",
    "src/lib.rs" => "rust3/src/lib.rs",
    ".gitignore" => "rust3/gitignore",
};

const JS: Files = template! {
    "nimbus.toml" => "js/nimbus.toml",
    "package.json" => "js/package.json",
    "src/app.js" => "js/src/app.js",
    "build.sh" => "js/build.sh",
    ".gitignore" => "js/gitignore",
};

const PYTHON: Files = template! {
    "nimbus.toml" => "python/nimbus.toml",
    "app.py" => "python/app.py",
    "build.sh" => "python/build.sh",
    ".gitignore" => "python/gitignore",
};

/// `wit/app`: the world and its dependencies, as the toolchains read them.
macro_rules! wit {
    ($($path:literal),* $(,)?) => {
        &[$((concat!("wit/", $path), include_str!(concat!("../../../wit/app/", $path)))),*]
    };
}

const WIT: Files = wit![
    "world.wit",
    "deps/cli.wit",
    "deps/clocks.wit",
    "deps/filesystem.wit",
    "deps/http.wit",
    "deps/io.wit",
    "deps/random.wit",
    "deps/sockets.wit",
    "deps/keyvalue/atomic.wit",
    "deps/keyvalue/batch.wit",
    "deps/keyvalue/store.wit",
    "deps/keyvalue/world.wit",
    "deps/config/store.wit",
    "deps/config/world.wit",
    "deps/nimbus-data.wit",
    "deps/nimbus-realtime.wit",
    "deps/nimbus-events.wit",
];

/// The files of a new app in `lang` with a `wasi` handler.
fn files(lang: Lang, wasi: Wasi) -> anyhow::Result<Vec<(&'static str, &'static str)>> {
    Ok(match (lang, wasi) {
        (Lang::Rust, Wasi::P3) => RUST3.to_vec(),
        (Lang::Rust, Wasi::P2) => RUST2.to_vec(),
        (Lang::Js, Wasi::P2) => [JS, WIT].concat(),
        (Lang::Python, Wasi::P2) => [PYTHON, WIT].concat(),
        (Lang::Js | Lang::Python, Wasi::P3) => bail!(
            "componentize-js 0.23 and componentize-py 0.25 build WASI 0.2 components only: use --wasi 0.2 (the default for {lang:?})"
        ),
    })
}

/// Writes the app `name` into `dir/name` (which must not exist yet, or be
/// empty) and says how to deploy it.
pub fn run(dir: &Path, name: &str, lang: Lang, wasi: Option<Wasi>) -> anyhow::Result<()> {
    nimbus_core::names::check_name("app", name).map_err(anyhow::Error::msg)?;
    // Unsaid, the language's default: 0.3 for Rust, 0.2 for the others.
    let wasi = wasi.unwrap_or(match lang {
        Lang::Rust => Wasi::P3,
        Lang::Js | Lang::Python => Wasi::P2,
    });
    let files = files(lang, wasi)?;
    let root = dir.join(name);
    if root.exists()
        && std::fs::read_dir(&root)
            .with_context(|| format!("reading {}", root.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} already exists and is not empty: choose another name, or remove it",
            root.display()
        );
    }
    // The crate's library file is named after it, with `_` for `-`.
    let crate_name = name.replace('-', "_");
    for (path, text) in files {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name);
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", file.display()))?;
        }
    }
    let needs = match lang {
        Lang::Rust => "cargo with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`)",
        Lang::Js => "Node.js and npm (componentize-js is installed at the first build)",
        Lang::Python => "componentize-py (`pip install componentize-py==0.25.1`)",
    };
    println!(
        "created {} ({lang:?}, WASI {})\nbuilding it needs {needs}\ndeploy it: nimbus deploy {}\nthen: curl http://127.0.0.1:8080/{name}",
        root.display(),
        match wasi {
            Wasi::P2 => "0.2",
            Wasi::P3 => "0.3",
        },
        root.display(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_names_its_app_and_a_build() {
        for (lang, wasi) in [
            (Lang::Rust, Some(Wasi::P2)),
            (Lang::Rust, Some(Wasi::P3)),
            (Lang::Js, None),
            (Lang::Python, None),
        ] {
            let dir = tempfile::tempdir().unwrap();
            run(dir.path(), "my-app", lang, wasi).unwrap();
            let manifest = std::fs::read_to_string(dir.path().join("my-app/nimbus.toml")).unwrap();
            assert!(manifest.contains("name = \"my-app\""), "{manifest}");
            assert!(manifest.contains("build = "), "{manifest}");
            assert!(!manifest.contains("{{"), "{manifest}");
            if lang == Lang::Rust {
                assert!(manifest.contains("release/my_app.wasm"), "{manifest}");
            } else {
                assert!(
                    dir.path()
                        .join("my-app/wit/deps/nimbus-events.wit")
                        .exists()
                );
            }
            // A second run never overwrites the first.
            let err = run(dir.path(), "my-app", lang, wasi).unwrap_err();
            assert!(err.to_string().contains("already exists"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = run(dir.path(), "Bad Name", Lang::Rust, None).unwrap_err();
        assert!(err.to_string().contains("invalid"), "{err}");
        let err = run(dir.path(), "ok", Lang::Js, Some(Wasi::P3)).unwrap_err();
        assert!(err.to_string().contains("--wasi 0.2"), "{err}");
        assert!(!dir.path().join("ok").exists());
    }
}
