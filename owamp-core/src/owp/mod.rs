//! The .owp session data file of perfSONAR owamp.
