"""The ngfw VM: its NoCloud seeds (the image itself is built by deploy/vm/build-image.sh)."""
