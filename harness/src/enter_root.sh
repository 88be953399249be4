# Runs a program inside a Debian root (a directory made by `debootstrap`), with the host's
# data directories (the workspace, /tmp, /root, ...) at the same paths, so the program sees the
# same files, sockets and temporary directories as the caller. Run as
#   unshare --mount --propagation private /bin/sh -c "$(cat enter_root.sh)" enter ROOT PROGRAM ARGS...
# from the directory PROGRAM is to run in.
# The mounts live in the private mount namespace `unshare` made: they go when the program exits,
# whichever way, and nothing is left mounted on the host. Every step is an exec, so PROGRAM
# keeps the process ID the caller spawned (signals, pidfiles and --exit-with-parent work).
set -e
root=$1 cwd=$(pwd)
shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
# Every top-level directory of the host that holds data rather than the operating system.
for dir in /*/ /var/tmp/; do
    dir=${dir%/}
    case $dir in
        /bin|/boot|/dev|/etc|/lib|/lib32|/lib64|/libx32|/lost+found|/media|/proc|/run|/sbin|/sys|/usr|/var) continue ;;
    esac
    [ -L "$dir" ] && continue
    mkdir -p "$root$dir"
    mount --rbind "$dir" "$root$dir"
done
exec chroot "$root" /bin/sh -c 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' enter "$cwd" "$@"
