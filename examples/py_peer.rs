//! The Rust side of the Python package's interop tests (`python/tests/`): one
//! role per run, on segments the Python side names.
//!
//! ```text
//! py_peer fill NAME N        create persistent f64 array [N], a[i] = 1.5 * i
//! py_peer verify NAME N      open f64 array, check a[i] == 2 * i under the lock
//! py_peer put NAME N         open u64 queue, put 0..N (batches), then close it
//! py_peer get NAME N         open u64 queue, get N items, check they are 0..N
//! py_peer hold NAME          open f64 array, lock, a[0] = -1 (a half update),
//!                            print "locked", then wait to be killed
//! py_peer recover NAME       open f64 array, lock: expect OwnerDied, repair
//!                            (a[0] = 42), mark consistent, print "recovered"
//! py_peer value-add NAME N   open i64 value, add 1 under its lock N times
//! ```
//! Without arguments it runs all roles on its own segments (a quick self-check,
//! as CI runs every example without arguments).
//!
//! Run: `cargo run --release --example py_peer -- fill shmarray-test-x 10`

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use shmarray::ndarray::Ix1;
use shmarray::{LockError, LockResultExt, Options, Queue, SharedArray, SharedValue};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run(role: &str, name: &str, n: usize) -> Res<()> {
    match role {
        "fill" => {
            let opts = Options::new().persistent(true);
            let a = opts.create::<SharedArray<f64, Ix1>, _>(name, n)?;
            let mut g = a.lock().recover(|g| g.fill(0.0))?;
            for (i, x) in g.iter_mut().enumerate() {
                *x = 1.5 * i as f64;
            }
        }
        "verify" => {
            let a = SharedArray::<f64, Ix1>::open(name)?;
            let g = a.lock().recover(|_| {})?;
            if g.len() != n {
                return Err(format!("length {} != {n}", g.len()).into());
            }
            for (i, x) in g.iter().enumerate() {
                if *x != 2.0 * i as f64 {
                    return Err(format!("a[{i}] = {x}, expected {}", 2.0 * i as f64).into());
                }
            }
        }
        "put" => {
            let q = Queue::<u64>::open(name)?;
            let items: Vec<u64> = (0..n as u64).collect();
            for chunk in items.chunks(100) {
                q.put_slice(chunk)?;
            }
            q.close();
        }
        "get" => {
            let q = Queue::<u64>::open(name)?;
            let mut buf = vec![0u64; 256];
            let mut next = 0u64;
            while next < n as u64 {
                let got = q.get_into_timeout(&mut buf, Duration::from_secs(20))?;
                for &x in &buf[..got] {
                    if x != next {
                        return Err(format!("got {x}, expected {next}").into());
                    }
                    next += 1;
                }
            }
        }
        "hold" => {
            let a = SharedArray::<f64, Ix1>::open(name)?;
            let mut g = a.lock().recover(|_| {})?;
            g[0] = -1.0;
            println!("locked");
            std::io::stdout().flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "recover" => {
            let a = SharedArray::<f64, Ix1>::open(name)?;
            let outcome = match a.lock_timeout(Duration::from_secs(20)) {
                Err(LockError::OwnerDied(mut g)) => {
                    g[0] = 42.0;
                    g.mark_consistent();
                    println!("recovered");
                    Ok(())
                }
                Ok(_) => Err("expected OwnerDied, got the lock".into()),
                Err(e) => Err(e.into_failure().into()),
            };
            return outcome;
        }
        "value-add" => {
            let v = SharedValue::<i64>::open(name)?;
            for _ in 0..n {
                *v.lock().recover(|_| {})? += 1;
            }
        }
        other => return Err(format!("unknown role {other:?}").into()),
    }
    Ok(())
}

/// Without arguments: every role against another run of this program.
fn self_check() -> Res<()> {
    let exe = std::env::current_exe()?;
    let peer = |args: &[&str]| -> Res<()> {
        let st = Command::new(&exe).args(args).status()?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("py_peer {args:?}: {st}").into())
        }
    };
    let name = format!("shmarray-example-py-peer-{}", std::process::id());
    peer(&["fill", &name, "8"])?;
    {
        let a = SharedArray::<f64, Ix1>::open(&name)?;
        let mut g = a.lock().recover(|_| {})?;
        assert_eq!(g[3], 4.5);
        g.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = 2.0 * i as f64);
    }
    peer(&["verify", &name, "8"])?;
    // A holder killed with SIGKILL, then recovered by another process.
    let mut holder = Command::new(&exe)
        .args(["hold", &name])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().ok_or("no stdout")?),
        &mut line,
    )?;
    holder.kill()?;
    holder.wait()?;
    peer(&["recover", &name])?;
    shmarray::admin::remove(&name)?;
    let qname = format!("{name}-q");
    let q = Queue::<u64>::create(&qname, 64)?;
    let mut producer = Command::new(&exe).args(["put", &qname, "1000"]).spawn()?;
    let mut got = Vec::new();
    let mut buf = [0u64; 64];
    // The producer closes the queue after its last item: drained, then `Closed`.
    while let Ok(n) = q.get_into_timeout(&mut buf, Duration::from_secs(20)) {
        got.extend_from_slice(&buf[..n]);
    }
    if !producer.wait()?.success() {
        return Err("producer failed".into());
    }
    assert_eq!(got, (0..1000).collect::<Vec<u64>>());
    println!("py_peer: self-check passed");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.as_slice() {
        [] => self_check(),
        [role, name] => run(role, name, 0),
        [role, name, n] => match n.parse() {
            Ok(n) => run(role, name, n),
            Err(e) => Err(format!("bad count {n:?}: {e}").into()),
        },
        _ => Err("usage: py_peer ROLE NAME [N] (see the source)".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("py_peer: {e}");
            ExitCode::FAILURE
        }
    }
}
