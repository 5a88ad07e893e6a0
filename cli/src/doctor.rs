//! `shmarray doctor`: what this machine offers for huge pages, where segments of
//! each kind would go, and the commands that turn huge pages on.

use std::io::Write;

use shmarray::{
    huge::{huge_page_support, HugeMount, HugePageSupport, PageKind},
    Namespace,
};

use crate::inspect::pages_text;
use crate::text::{escape, escape_path, human_bytes, sanitize};
use crate::{CliError, Status};

/// Arguments of `shmarray doctor`.
#[derive(clap::Args)]
pub(crate) struct Args {}

/// Whether a discovered mount joins the default namespace, and if not, why not.
fn mount_verdict(m: &HugeMount) -> String {
    if !m.writable {
        " (not writable by you)".into()
    } else if let Some(p) = &m.refused {
        format!(" (refused: {})", sanitize(&p.to_string()))
    } else if m.page_size != 2 << 20 {
        " (not used: only 2 MiB pages are)".into()
    } else {
        String::new()
    }
}

/// The verdict for `HugePages::Require` on a named segment in `ns`.
fn verdict(ns: &Namespace, support: &HugePageSupport) -> String {
    let dirs = ns.directories();
    let Some(d) = dirs.iter().find(|d| d.backing.is_huge()) else {
        if let Some(r) = ns.refused().first() {
            return format!(
                "named segments: no huge-page directory ({} is refused); HugePages::Require \
                 fails with DirectoryRefused, Prefer falls back to base pages",
                escape_path(&r.path)
            );
        }
        return "named segments: no huge-page directory; HugePages::Require fails with \
                HugePagesUnavailable, Prefer falls back to base pages"
            .into();
    };
    let place = escape_path(&d.path);
    match d.backing.kind {
        PageKind::HugeTlb => match support.free_pages(d.backing.page_size) {
            Some(0) | None => format!(
                "named segments: huge-page segments go to {place}, but its pool has no free \
                 pages: Require fails with NoSpace, Prefer falls back to base pages"
            ),
            Some(free) => format!(
                "named segments: huge-page segments go to {place} (hugetlb; {free} free pages, \
                 {} in all)",
                human_bytes(free * d.backing.page_size)
            ),
        },
        _ => format!(
            "named segments: huge-page segments go to {place} (transparent huge pages: the \
             kernel uses them where it can)"
        ),
    }
}

pub(crate) fn run(ns: &Namespace, _args: &Args, out: &mut dyn Write) -> Result<Status, CliError> {
    let support = huge_page_support();
    writeln!(out, "segment directories, in lookup order:")?;
    for d in ns.directories() {
        let space = match (d.backing.kind, d.size, d.free) {
            (PageKind::HugeTlb, _, _) => "space: the hugetlb pool".to_string(),
            (_, Some(size), Some(free)) => {
                format!("{} free of {}", human_bytes(free), human_bytes(size))
            }
            _ => "size unknown".into(),
        };
        writeln!(
            out,
            "  {:<28} {:<12} {space}",
            escape_path(&d.path),
            pages_text(&d.backing)
        )?;
    }
    if !ns.refused().is_empty() {
        writeln!(
            out,
            "\nrefused huge-page directories (not used for anything):"
        )?;
        for r in ns.refused() {
            writeln!(
                out,
                "  {:<28} {}",
                escape_path(&r.path),
                sanitize(&r.problem.to_string())
            )?;
        }
    }
    writeln!(out, "\nhugetlb pools (/sys/kernel/mm/hugepages):")?;
    if support.pools.is_empty() {
        writeln!(
            out,
            "  none (no hugetlb support in this kernel, or no /sys)"
        )?;
    }
    for p in &support.pools {
        writeln!(
            out,
            "  {:>8} pages: {} in the pool, {} free, {} reserved, {} surplus",
            human_bytes(p.page_size),
            p.total,
            p.free,
            p.reserved,
            p.surplus
        )?;
    }
    writeln!(out, "\nhuge-capable mounts (/proc/self/mountinfo):")?;
    if support.mounts.is_empty() {
        writeln!(out, "  none")?;
    }
    for m in &support.mounts {
        writeln!(
            out,
            "  {:<28} {:<12} {}{}",
            escape_path(&m.path),
            match m.kind {
                PageKind::HugeTlb => format!("hugetlbfs {}", human_bytes(m.page_size)),
                _ => "tmpfs thp".into(),
            },
            escape(&m.options),
            mount_verdict(m)
        )?;
    }
    writeln!(
        out,
        "\ntransparent huge pages for shmem (shmem_enabled): {}",
        support
            .thp_shmem
            .as_deref()
            .map_or("unknown".into(), escape)
    )?;
    writeln!(
        out,
        "anonymous segments: HugePages::Prefer/Require use memfd_create(MFD_HUGETLB), \
         from the {} pool",
        support
            .default_huge_page
            .map_or("default".into(), human_bytes)
    )?;
    writeln!(out, "\n{}", verdict(ns, &support))?;
    writeln!(
        out,
        "\nto turn huge pages on (as root):\n\
         \x20 # reserve 1 GiB of 2 MiB pages (lasts until reboot; sysctl vm.nr_hugepages to keep)\n\
         \x20 echo 512 > /proc/sys/vm/nr_hugepages\n\
         \x20 # hugetlbfs for your group's segments\n\
         \x20 mkdir -p /dev/hugepages && mount -t hugetlbfs -o pagesize=2M,mode=1770,gid=$(id -g) none /dev/hugepages\n\
         \x20 # or transparent huge pages without a reserved pool\n\
         \x20 mkdir -p /dev/shm-huge && mount -t tmpfs -o huge=within_size,mode=1777 none /dev/shm-huge\n\
         writable mounts that pass the directory rule (yours or root's, sticky if shared) are found by\n\
         themselves; elsewhere set {}=<dir> or pass --huge-dir",
        shmarray::huge::HUGE_DIR_ENV
    )?;
    Ok(Status::Ok)
}
