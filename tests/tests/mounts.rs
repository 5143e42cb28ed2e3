//! `mounts` of every kind runc handles, `root`, `rootfsPropagation` and `--no-pivot`, seen from
//! inside the container under runc and husk: bind/rbind with ro, nosuid, nodev, noexec, rro and
//! propagation flags (mounts made on the host after start reach an rslave bind, not an rprivate
//! one; mounts made in an rshared bind reach the host), tmpfs size/mode/nr_inodes and
//! tmpcopyup, proc, sysfs, devpts, mqueue and cgroup, destinations through symlinks that stay
//! inside the rootfs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{mount_table, pair, WAIT};
use husk_tests::{host, require_root, temp_dir, Bundle};
use serde_json::{json, Value};

fn push_mounts(c: &mut Value, mounts: &[Value]) {
    c["mounts"]
        .as_array_mut()
        .expect("mounts")
        .extend(mounts.iter().cloned());
}

/// Runs mount(8) on the host; panics on failure.
fn host_mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("running mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_mount_kind() {
    require_root!();
    let p = pair("mountkinds");
    let src = temp_dir("mountsrc");
    std::fs::write(src.path().join("file"), "bound\n").expect("write");
    std::fs::write(src.path().join("tool"), "#!/bin/sh\necho ran\n").expect("write");
    std::fs::set_permissions(
        src.path().join("tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let script = "cat /proc/self/mountinfo; echo ---; \
        cat /m/bind-ro/file; (touch /m/bind-ro/new) 2>&1; /m/bind-noexec/tool 2>&1 | sed 's/:.*//'; \
        /m/bind-rw/tool; touch /m/bind-rw/new && echo rw-ok; rm -f /m/bind-rw/new; \
        cat /m/file-bind; stat -c '%a' /m/tmpfs; df -k /m/tmpfs | tail -1 | awk '{print $2}'; \
        ls /m/proc/self/status /m/sys/kernel/mm >/dev/null && echo proc-sys-ok; \
        ls /m/pts/ptmx && echo devpts-ok; ls /m/cgroup | sort | tr '\\n' ' '; echo; \
        (mkdir /m/cgroup/memory/x) 2>&1; true";
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", script]);
        c["root"]["readonly"] = json!(false);
        let s = src.path();
        push_mounts(
            c,
            &[
                json!({"destination": "/m/bind-ro", "type": "bind", "source": s,
                       "options": ["rbind", "ro", "nosuid", "nodev"]}),
                json!({"destination": "/m/bind-noexec", "type": "none", "source": s,
                       "options": ["bind", "noexec"]}),
                json!({"destination": "/m/bind-rw", "type": "bind", "source": s,
                       "options": ["rbind", "rw", "exec"]}),
                json!({"destination": "/m/file-bind", "type": "bind",
                       "source": s.join("file"), "options": ["bind", "ro"]}),
                json!({"destination": "/m/tmpfs", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "size=2m", "mode=1750", "nr_inodes=100"]}),
                json!({"destination": "/m/proc", "type": "proc", "source": "proc"}),
                json!({"destination": "/m/sys", "type": "sysfs", "source": "sysfs",
                       "options": ["ro", "nosuid", "noexec"]}),
                json!({"destination": "/m/pts", "type": "devpts", "source": "devpts",
                       "options": ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
                json!({"destination": "/m/mqueue", "type": "mqueue", "source": "mqueue",
                       "options": ["nosuid", "nodev", "noexec"]}),
                json!({"destination": "/m/cgroup", "type": "cgroup", "source": "cgroup",
                       "options": ["ro", "nosuid", "nodev", "noexec"]}),
            ],
        );
    });
    let (o, h) = p.run_ok(&b);
    let split = |s: &str| -> (String, String) {
        let (table, rest) = s.split_once("---\n").expect("separator");
        (mount_table(table), rest.to_string())
    };
    let ((ot, orest), (ht, hrest)) = (split(&o), split(&h));
    common::assert_same("mount table with every kind", &ot, &ht);
    common::assert_same("what the mounts do", &orest, &hrest);
    assert!(
        orest.starts_with(
            "bound\ntouch: /m/bind-ro/new: Read-only file system\nsh\nran\nrw-ok\nbound\n1750\n2048\n\
             proc-sys-ok\n/m/pts/ptmx\ndevpts-ok\n"
        ),
        "{orest}"
    );
    assert!(orest.contains("Read-only file system"), "{orest}");
    for m in [
        "/m/mqueue mqueue",
        "/m/cgroup/memory cgroup",
        "/m/sys sysfs ro,nosuid",
    ] {
        assert!(ot.contains(m), "{m} missing from\n{ot}");
    }
    drop(b);
    husk_tests::remove_temp_dir(src);
}

#[test]
fn recursive_read_only_bind() {
    require_root!();
    let p = pair("rro");
    let src = temp_dir("rrosrc");
    std::fs::create_dir(src.path().join("sub")).expect("mkdir");
    let sub = src.path().join("sub");
    let sub_s = sub.to_string_lossy().into_owned();
    host_mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs", &sub_s]);
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "(touch /a/x) 2>&1; (touch /a/sub/x) 2>&1; (touch /b/x) 2>&1; touch /b/sub/x && echo sub-rw"
        ]);
        push_mounts(
            c,
            &[
                json!({"destination": "/a", "type": "bind", "source": src.path(),
                       "options": ["rbind", "rro"]}),
                json!({"destination": "/b", "type": "bind", "source": src.path(),
                       "options": ["rbind", "ro"]}),
            ],
        );
    });
    let out = p.run_same("rro versus ro", &b);
    assert_eq!(
        out,
        "touch: /a/x: Read-only file system\ntouch: /a/sub/x: Read-only file system\n\
         touch: /b/x: Read-only file system\nsub-rw\n"
    );
    drop(b);
    husk_tests::remove_temp_dir(src);
}

#[test]
fn tmpfs_copy_up() {
    require_root!();
    let p = pair("copyup");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /etc/hostname; stat -c '%a %u' /etc /etc/passwd; touch /etc/new && echo writable; \
             awk '$5 == \"/etc\" {print $9}' /proc/self/mountinfo"
        ]);
        push_mounts(
            c,
            &[
                json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                     "options": ["tmpcopyup", "size=1m"]}),
            ],
        );
    });
    let out = p.run_same("tmpcopyup", &b);
    assert!(
        out.starts_with("runc\n755 0\n644 0\nwritable\ntmpfs\n"),
        "{out}"
    );
    // The image's /etc is unchanged.
    assert!(!b.rootfs().join("etc/new").exists());
}

/// Mounts made on the host after start reach an rslave bind but not an rprivate one; with
/// rootfsPropagation rshared, a mount made in an rshared bind reaches the host.
#[test]
fn bind_propagation() {
    require_root!();
    let p = pair("bindprop");
    for rt in p.both() {
        let src = temp_dir("propsrc");
        let s = src.path().to_string_lossy().into_owned();
        // A shared mount of its own, so propagation does not depend on the host's / (which is
        // private here) and nothing reaches beyond this directory.
        host_mount(&["--bind", &s, &s]);
        host_mount(&["--make-shared", &s]);
        for d in ["from-host", "from-ctr", "from-ctr-slave"] {
            std::fs::create_dir(src.path().join(d)).expect("mkdir");
        }
        let script = "mount -t tmpfs -o size=1m tmpfs /m/shared/from-ctr && touch /m/shared/from-ctr/mark; \
            mount -t tmpfs -o size=1m tmpfs /m/slave/from-ctr-slave; \
            i=0; while [ ! -e /m/slave/from-host/mark ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
            for m in slave private shared; do [ -e /m/$m/from-host/mark ] && echo $m sees host || echo $m blind; done";
        let b = Bundle::new(|c| {
            c["process"]["args"] = json!(["sh", "-c", script]);
            c["linux"]["rootfsPropagation"] = json!("rshared");
            let caps = json!(["CAP_SYS_ADMIN"]);
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set] = caps.clone();
            }
            push_mounts(
                c,
                &[
                    json!({"destination": "/m/slave", "type": "bind", "source": &s,
                           "options": ["rbind", "rslave"]}),
                    json!({"destination": "/m/private", "type": "bind", "source": &s,
                           "options": ["rbind", "rprivate"]}),
                    json!({"destination": "/m/shared", "type": "bind", "source": &s,
                           "options": ["rbind", "rshared"]}),
                ],
            );
        });
        let id = rt.new_id();
        let created = rt.create(&b, &id);
        created.ok();
        rt.start(&id).ok();
        let from_host = src.path().join("from-host");
        host_mount(&[
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            &from_host.to_string_lossy(),
        ]);
        std::fs::write(from_host.join("mark"), "").expect("write mark");
        rt.wait_status(&id, "stopped", WAIT);
        let out = created.stdout_now();
        assert_eq!(
            out,
            "slave sees host\nprivate blind\nshared sees host\n",
            "{}: {created}",
            rt.flavor.name()
        );
        // The rshared mount reached the host; the one in the rslave bind did not.
        assert!(
            src.path().join("from-ctr/mark").exists(),
            "{}: a mount in an rshared bind did not reach the host",
            rt.flavor.name()
        );
        let mounted: Vec<String> = host::mounts_under(src.path())
            .into_iter()
            .map(|m| m.mount_point)
            .collect();
        assert!(
            !mounted.iter().any(|m| m.ends_with("from-ctr-slave")),
            "{}: a mount in an rslave bind reached the host: {mounted:?}",
            rt.flavor.name()
        );
        rt.delete(&id).ok();
        drop(b);
        husk_tests::remove_temp_dir(src);
    }
}

/// The propagation of the container's / (optional fields of its mountinfo line), for each
/// rootfsPropagation value.
#[test]
fn rootfs_propagation() {
    require_root!();
    let p = pair("rootprop");
    let b = Bundle::with_args(&["true"]);
    b.set_sh("awk '$5 == \"/\" {print $7}' /proc/self/mountinfo | sed 's/[0-9]*$//'");
    for prop in ["", "private", "rprivate", "slave", "rslave"] {
        b.edit(|c| c["linux"]["rootfsPropagation"] = json!(prop));
        let out = p.run_same(&format!("rootfsPropagation {prop:?}"), &b);
        assert_eq!(out, "-\n", "{prop:?}");
    }
    // runc before 1.2.7/1.3 never makes / shared (runc issue #1755, fixed by PR #4724): husk
    // does what the spec asks, so only husk is checked.
    for prop in ["shared", "rshared"] {
        b.edit(|c| c["linux"]["rootfsPropagation"] = json!(prop));
        let out = p.husk.run_new(&b);
        assert_eq!(out.ok().stdout, "shared:\n", "{prop}: {out}");
    }
    // unbindable cannot be the propagation of a bind source: both refuse it at the rootfs bind.
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("runbindable"));
    let (o, h) = p.run(&b);
    o.fails();
    h.fails();
    assert_eq!(h.stderr_lines().len(), 1, "{h}");
    p.husk.assert_host_clean(&[&b]);
}

/// A mount destination through a symlink (absolute to a host path, relative with more `..`
/// than the rootfs is deep, nested) lands where the symlink leads *inside* the rootfs; nothing
/// is mounted or created outside it.
#[test]
fn symlink_destinations_stay_inside_rootfs() {
    require_root!();
    let p = pair("symlinkdest");
    let outside = temp_dir("symlink-outside");
    let out_s = outside.path().to_string_lossy().into_owned();
    let script = format!(
        "grep -E ' ({out_s}|/rel-target|/deep/target) ' /proc/self/mountinfo | cut -d' ' -f5 | sort; \
         ls -d {out_s} /rel-target /deep/target"
    );
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!(["sh", "-c", script]);
        let tmpfs = |d: &str| json!({"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]});
        push_mounts(c, &[tmpfs("/abs"), tmpfs("/rel/x"), tmpfs("/nest/y/z")]);
    });
    let root = b.rootfs();
    let ups = "../".repeat(root.components().count() + 2);
    // Followed on the host, /abs would be the host's `outside` dir; in the rootfs it is
    // ROOTFS/<that path>.
    std::os::unix::fs::symlink(outside.path(), root.join("abs")).expect("symlink");
    std::fs::create_dir(root.join("rel")).expect("mkdir");
    std::os::unix::fs::symlink(format!("{ups}rel-target"), root.join("rel/x")).expect("symlink");
    std::os::unix::fs::symlink(format!("{ups}deep"), root.join("nest")).expect("symlink");
    std::fs::create_dir_all(root.join("deep/y")).expect("mkdir");
    std::os::unix::fs::symlink("../target", root.join("deep/y/z")).expect("symlink");
    let out = p.run_same("mounts through symlinks", &b);
    let mut want = vec![out_s.clone(), "/deep/target".into(), "/rel-target".into()];
    want.sort();
    // ls sorts its arguments too.
    want.extend(want.clone());
    assert_eq!(out, want.join("\n") + "\n");
    for host_path in ["/rel-target", "/deep"] {
        assert!(
            !Path::new(host_path).exists(),
            "{host_path} was created on the host"
        );
    }
    assert!(root.join(out_s.trim_start_matches('/')).is_dir());
    assert!(root.join("rel-target").is_dir() && root.join("deep/target").is_dir());
    assert!(host::mounts_under(outside.path()).is_empty());
    assert_eq!(std::fs::read_dir(outside.path()).expect("read").count(), 0);
    p.husk.assert_host_clean(&[&b]);
    husk_tests::remove_temp_dir(outside);
}

#[test]
fn no_pivot() {
    require_root!();
    let p = pair("nopivot");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /proc/self/mountinfo; echo ---; ls /; cat /proc/self/status | grep NoNew"
        ]);
    });
    let bundle = b.path().to_string_lossy().into_owned();
    let mut outs = Vec::new();
    for rt in p.both() {
        let id = rt.new_id();
        rt.track_id(&id);
        let out = rt.exec(&["run", "--no-pivot", "--bundle", &bundle, &id]);
        outs.push(out.ok().stdout.clone());
    }
    let split = |s: &str| -> (String, String) {
        let (table, rest) = s.split_once("---\n").expect("separator");
        (mount_table(table), rest.to_string())
    };
    let ((ot, orest), (ht, hrest)) = (split(&outs[0]), split(&outs[1]));
    common::assert_same("mount table with --no-pivot", &ot, &ht);
    common::assert_same("--no-pivot root", &orest, &hrest);
    assert!(orest.contains("bin\n"), "{orest}");
    // private root propagation is refused with --no-pivot, by both.
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rprivate"));
    for rt in p.both() {
        let id = rt.new_id();
        let out = rt.exec(&["run", "--no-pivot", "--bundle", &bundle, &id]);
        out.fails();
    }
    p.husk.assert_host_clean(&[&b]);
}

/// A bind mount source that is a symlink is followed on the host (it is a host path); the
/// destination is created to match a file source.
#[test]
fn bind_sources_files_and_symlinks() {
    require_root!();
    let p = pair("bindsrc");
    let src = temp_dir("bindsrc");
    std::fs::write(src.path().join("real"), "real file\n").expect("write");
    std::os::unix::fs::symlink(src.path().join("real"), src.path().join("link")).expect("ln");
    let b = Bundle::new(|c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /etc/from-link /new/dir/file; stat -c '%F' /etc/from-link /new/dir/file"
        ]);
        push_mounts(
            c,
            &[
                json!({"destination": "/etc/from-link", "type": "bind",
                       "source": src.path().join("link"), "options": ["bind"]}),
                json!({"destination": "/new/dir/file", "type": "bind",
                       "source": src.path().join("real"), "options": ["rbind", "ro"]}),
            ],
        );
    });
    let out = p.run_same("file bind mounts", &b);
    assert_eq!(out, "real file\nreal file\nregular file\nregular file\n");
    drop(b);
    husk_tests::remove_temp_dir(src);
}

/// Waits up to `d` for `f`.
fn eventually(d: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// mqueue and devpts instances are the container's own: a queue made inside is not the host's,
/// and the container's /dev/pts holds only its own ptys.
#[test]
fn mqueue_and_devpts_are_private() {
    require_root!();
    let p = pair("mqdevpts");
    let b = Bundle::sh("touch /dev/mqueue/q-$$ && ls /dev/mqueue; ls /dev/pts");
    let out = p.run_same("mqueue and devpts", &b);
    assert_eq!(out, "q-1\nptmx\n");
    assert!(eventually(Duration::from_millis(100), || !Path::new(
        "/dev/mqueue/q-1"
    )
    .exists()));
}
