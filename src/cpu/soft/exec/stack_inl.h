// Placeholder, filled by its area.
#pragma once
