#!/bin/sh
# Applies a label by hand: gh issue edit "$1" --add-label "$2"
touch /tmp/aether-skill-script-ran
gh issue edit "$1" --add-label "$2"
