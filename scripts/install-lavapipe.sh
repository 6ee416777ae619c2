#!/bin/sh
# Installs Mesa's lavapipe (software Vulkan) from bookworm-backports so that Dawn (the `webgpu` package) finds an
# adapter on a machine without a GPU. Debian 12's own Mesa 22.x lavapipe does not run Dawn; backports' 25.x does
# and offers shader-f16. Idempotent: a second run only checks. Needs root (or sudo) and the Debian mirror.
set -eu

have_lavapipe() {
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 &&
    dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null | grep -qv '^2[0-4]\.'
}

if have_lavapipe; then
  echo "lavapipe: mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers) already installed"
  exit 0
fi

SUDO=''
[ "$(id -u)" = 0 ] || SUDO='sudo'
LIST=/etc/apt/sources.list.d/bookworm-backports.list
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee "$LIST" >/dev/null
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  -t bookworm-backports mesa-vulkan-drivers libvulkan1
have_lavapipe || { echo 'lavapipe: mesa-vulkan-drivers from bookworm-backports did not install' >&2; exit 1; }
echo "lavapipe: mesa-vulkan-drivers $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers) installed"
