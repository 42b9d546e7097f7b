# shellcheck shell=bash
# `provision.sh doctor`: checks a running Pi for the known pitfalls (the README's "Check it" lists them) and says
# what to fix. Not run directly: provision.sh sends remote.sh (its settings and helpers), then this file, then the
# call to remote_doctor, through SSH. Changes nothing; exits 2 when something must be fixed.
#
# What the server's own rules answer (the live Wayland socket, the GPIO library, the browser profile's crash
# flag, display.backend) comes from one `python -m server --doctor` (server/doctor.py), not from Python here.
# shellcheck disable=SC2154 # ROOT, OPT, ETC, HB_USER, HB_HOME, ... are set by remote.sh, sent before this file

# doctor_facts RUNTIME_DIR: the server's answers (name=value lines; see server/doctor.py), or exit status 1.
doctor_facts() {
	(cd "$OPT" && "$OPT/.venv/bin/python" -B -m server --doctor --config "$ETC/config.yaml" \
		--runtime-dir "$1" --browser-profile "$HB_HOME/.config/chromium")
}

# fact_in FACTS NAME: the value of NAME in doctor_facts' output.
fact_in() { printf '%s\n' "$1" | sed -n "s/^$2=//p"; }

remote_doctor() {
	local fails=0 uid rt facts live wall other imported blank browser gpio sync free_mb exit_type kiosk backend t
	ok() { printf 'OK    %s\n' "$*"; }
	warn() { printf 'WARN  %s\n' "$*"; }
	fail() {
		printf 'FAIL  %s\n' "$*"
		fails=$((fails + 1))
	}
	uid=$(getent passwd "$HB_USER" | cut -d: -f3 || true)
	if [ -n "$uid" ]; then ok "account $HB_USER (uid $uid)"; else fail "no $HB_USER account → run provision.sh"; fi

	if unit_active "$SERVICE"; then
		ok "$SERVICE is running"
	else
		fail "$SERVICE is not running → sudo systemctl status $SERVICE; journalctl -u $SERVICE -n 50"
	fi

	# The wall session: its real state over a few seconds, and nobody else on its console.
	wall=$(wall_session_state)
	if [ "$wall" = running ]; then
		ok "wall session: $WALL_UNIT is running"
	else
		fail "wall session: $wall → sudo systemctl status $WALL_UNIT; journalctl -b -u $WALL_UNIT"
	fi
	for other in "getty@tty$WALL_VT.service" greetd.service lightdm.service; do
		if unit_active "$other"; then
			fail "$other also runs and competes for tty$WALL_VT → sudo systemctl disable --now $other (or run provision.sh again)"
		fi
	done

	rt="$ROOT/run/user/${uid:-none}"
	if ! facts=$(doctor_facts "$rt" 2>&1); then
		fail "the server's own checks did not run: $(printf '%s\n' "$facts" | tail -n 1) → $OPT/.venv/bin/python -m server --doctor --help"
		facts=""
	fi

	# Wayland: wayland-0 or wayland-1, and alive (a dead compositor leaves its socket file behind).
	live=$(fact_in "$facts" wayland_live)
	if [ -n "$live" ]; then
		ok "Wayland socket: $live in $rt"
	else
		fail "no live Wayland socket in $rt: the wall session is not running → sudo systemctl status $WALL_UNIT; journalctl -b -u $WALL_UNIT"
	fi
	imported=$(systemctl --user -M "$HB_USER@" show-environment 2>/dev/null | sed -n 's/^WAYLAND_DISPLAY=//p' || true)
	if [ -n "$live" ] && [ -n "$imported" ] && ! printf '%s\n' "$live" | grep -qw -- "$imported"; then
		warn "the user manager has WAYLAND_DISPLAY=$imported but the live socket is $live (the launcher uses the live one)"
	fi

	# Screen blanking.
	blank=$(cat "$ROOT/sys/module/kernel/parameters/consoleblank" 2>/dev/null || echo unknown)
	case "$blank" in
	0) ok "console blanking is off (consoleblank=0)" ;;
	unknown) warn "cannot read /sys/module/kernel/parameters/consoleblank" ;;
	*) warn "the console blanks after $blank s → add consoleblank=0 to the one line in /boot/firmware/cmdline.txt" ;;
	esac
	if pgrep -u "$HB_USER" -x swayidle >/dev/null 2>&1 || grep -qs '^[^#]*swayidle' "$HB_HOME/.config/labwc/autostart"; then
		warn "swayidle runs in the wall session and blanks the screen behind Homeboard's back → remove it from $HB_HOME/.config/labwc/autostart"
	else
		ok "no swayidle in the wall session (Homeboard switches the screen itself)"
	fi

	# chromium vs chromium-browser.
	browser=$(command -v chromium || command -v chromium-browser || true)
	if [ -n "$browser" ]; then ok "browser: $browser"; else fail "neither chromium nor chromium-browser is installed → sudo apt install chromium"; fi

	# RPi.GPIO on a Pi 5.
	case "$PI_MODEL" in
	"Raspberry Pi 5"*)
		gpio=$(fact_in "$facts" gpio_library)
		case "$gpio" in
		lgpio) ok "GPIO: rpi-lgpio (the RPi.GPIO that works on a Pi 5)" ;;
		rpi.gpio) fail "RPi.GPIO is installed on a Pi 5, where it fails → sudo apt remove python3-rpi.gpio && sudo apt install python3-rpi-lgpio" ;;
		*) fail "no GPIO library for the PIR and buttons → sudo apt install python3-rpi-lgpio" ;;
		esac
		;;
	esac

	# Clock: without an RTC the time is wrong until NTP syncs, and TLS to the APIs fails until then.
	sync=$(timedatectl show -p NTPSynchronized --value 2>/dev/null || echo unknown)
	case "$sync" in
	yes) ok "clock synchronised ($(date '+%Y-%m-%d %H:%M %Z'))" ;;
	no) warn "clock not synchronised: API calls fail with TLS errors until it is → check the network; timedatectl timesync-status" ;;
	*) warn "cannot tell whether the clock is synchronised (timedatectl)" ;;
	esac

	free_mb=$(df -Pm "$ROOT/" | awk 'NR == 2 { print $4 }')
	if [ "$free_mb" -ge 200 ]; then
		ok "$free_mb MB free"
	else
		fail "only $free_mb MB free → sudo apt-get clean; sudo journalctl --vacuum-size=20M"
	fi

	# The profile's crash flag: Chromium sets it while it runs; the launcher repairs it before each start.
	exit_type=$(fact_in "$facts" browser_exit_type)
	case "$exit_type" in
	"") ;; # the server's checks did not run (said above)
	absent) ok "no browser profile yet" ;;
	unreadable) warn "the browser profile's Preferences is not valid JSON (the launcher moves it aside at the next start)" ;;
	*)
		kiosk=$(systemctl --user -M "$HB_USER@" is-active "$KIOSK_UNIT" 2>/dev/null || true)
		if [ "$exit_type" = Crashed ] && [ "$kiosk" != active ]; then
			warn "the browser profile says its last session crashed and the browser is not running; the launcher repairs the flag when it starts → systemctl --user -M $HB_USER@ restart $KIOSK_UNIT"
		else
			ok "browser profile crash flag: $exit_type (browser ${kiosk:-unknown})"
		fi
		;;
	esac

	# Display power: vcgencmd does nothing on the KMS driver Bookworm uses.
	backend=$(fact_in "$facts" display_backend)
	case "$backend" in
	"") ;; # the server's checks did not run (said above)
	vcgencmd) warn "display.backend is vcgencmd, which does nothing on Bookworm (KMS) → use wlopm" ;;
	none)
		local hdmi=wlopm
		if [ "$FLAVOR" = debian ]; then hdmi=wlr-randr; fi
		warn "display.backend is none: the screen is never switched off → $hdmi (HDMI), cec (TV) or backlight (DSI); try: $OPT/.venv/bin/python -m server.display probe"
		;;
	*) ok "display backend: $backend" ;;
	esac

	if [ -n "$PI_MODEL" ]; then
		if [ -e "$ROOT/dev/i2c-1" ]; then ok "I2C bus /dev/i2c-1"; else warn "no /dev/i2c-1 → sudo raspi-config nonint do_i2c 0, then reboot"; fi
		if grep -qx 'dtparam=watchdog=on' "$BOOT/config.txt" 2>/dev/null; then
			t=$(cat "$ROOT/sys/class/watchdog/watchdog0/timeout" 2>/dev/null || echo "?")
			if [ "$t" = 15 ]; then ok "hardware watchdog armed (15 s)"; else warn "hardware watchdog configured, timeout is $t (15 expected after a reboot)"; fi
		fi
	fi
	if [ -e "$ROOT/var/lib/systemd/linger/$HB_USER" ]; then
		ok "lingering is on for $HB_USER"
	else
		fail "lingering is off → sudo loginctl enable-linger $HB_USER"
	fi

	echo "$fails problem(s) to fix"
	if [ "$fails" -gt 0 ]; then exit 2; fi
}
