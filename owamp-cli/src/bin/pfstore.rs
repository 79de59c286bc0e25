//! pfstore: manage identity/pass-phrase files, as perfSONAR's pfstore.

fn main() {
    let stderr = std::io::stderr();
    let code = owamp_cli::pfstore::run(
        std::env::args_os(),
        &mut stderr.lock(),
        &mut |prompt: &str| owamp_cli::prompt::read_passphrase(prompt),
    );
    std::process::exit(code);
}
