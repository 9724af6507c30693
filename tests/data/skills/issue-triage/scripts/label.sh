#!/bin/sh
# Applies a label by hand: gh issue edit "$1" --add-label "$2"
gh issue edit "$1" --add-label "$2"
