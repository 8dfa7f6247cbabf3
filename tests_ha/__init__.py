"""Tests for the Recovery Coach Home Assistant integration."""
