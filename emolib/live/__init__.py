"""Live capture: camera/microphone/file back-ends and the browser record-button widget."""
