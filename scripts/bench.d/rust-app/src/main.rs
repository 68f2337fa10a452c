use clap::Parser;
use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Msg {
    greeting: String,
    words: usize,
}

fn main() {
    let args = Args::parse();
    let greeting = format!("hello {}", args.name.unwrap_or_else(|| "world".into()));
    let words = Regex::new(r"\w+").unwrap().find_iter(&greeting).count();
    println!("{}", serde_json::to_string(&Msg { greeting, words }).unwrap());
}
// revision 0
