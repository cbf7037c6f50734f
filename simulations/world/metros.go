package world

// Continents of Metro.Continent.
const (
	Africa       = "Africa"
	Asia         = "Asia"
	Europe       = "Europe"
	NorthAmerica = "North America"
	SouthAmerica = "South America"
	Oceania      = "Oceania"
)

// Metro is a metropolitan area: where clients live and edge sites stand.
type Metro struct {
	// Name is the metro's usual English name, ASCII only.
	Name string
	// Country is the ISO 3166-1 alpha-2 code.
	Country string
	// Continent is one of the continent constants.
	Continent string
	// Lat and Lon are the city centre in degrees.
	Lat, Lon float64
	// Population is the metro area's population in millions (rounded,
	// recent estimates; relative sizes are what matter).
	Population float64
	// UTCOffset is the standard-time offset from UTC in hours (no daylight
	// saving), e.g. 5.5 for India.
	UTCOffset float64
}

// metros is the built-in table of world metropolitan areas. Populations
// are approximate metro-area figures from the UN World Urbanization
// Prospects and national statistics of the early 2020s.
var metros = []Metro{
	// North America.
	{"New York", "US", NorthAmerica, 40.7128, -74.0060, 19.5, -5},
	{"Los Angeles", "US", NorthAmerica, 34.0522, -118.2437, 13.0, -8},
	{"Chicago", "US", NorthAmerica, 41.8781, -87.6298, 9.4, -6},
	{"Dallas", "US", NorthAmerica, 32.7767, -96.7970, 7.6, -6},
	{"Houston", "US", NorthAmerica, 29.7604, -95.3698, 7.1, -6},
	{"Washington", "US", NorthAmerica, 38.9072, -77.0369, 6.3, -5},
	{"Miami", "US", NorthAmerica, 25.7617, -80.1918, 6.1, -5},
	{"Philadelphia", "US", NorthAmerica, 39.9526, -75.1652, 6.2, -5},
	{"Atlanta", "US", NorthAmerica, 33.7490, -84.3880, 6.1, -5},
	{"Boston", "US", NorthAmerica, 42.3601, -71.0589, 4.9, -5},
	{"Phoenix", "US", NorthAmerica, 33.4484, -112.0740, 4.9, -7},
	{"San Francisco", "US", NorthAmerica, 37.7749, -122.4194, 4.7, -8},
	{"Seattle", "US", NorthAmerica, 47.6062, -122.3321, 4.0, -8},
	{"Detroit", "US", NorthAmerica, 42.3314, -83.0458, 4.3, -5},
	{"Minneapolis", "US", NorthAmerica, 44.9778, -93.2650, 3.7, -6},
	{"San Diego", "US", NorthAmerica, 32.7157, -117.1611, 3.3, -8},
	{"Denver", "US", NorthAmerica, 39.7392, -104.9903, 3.0, -7},
	{"Toronto", "CA", NorthAmerica, 43.6532, -79.3832, 6.4, -5},
	{"Montreal", "CA", NorthAmerica, 45.5017, -73.5673, 4.3, -5},
	{"Vancouver", "CA", NorthAmerica, 49.2827, -123.1207, 2.6, -8},
	{"Mexico City", "MX", NorthAmerica, 19.4326, -99.1332, 21.8, -6},
	{"Guadalajara", "MX", NorthAmerica, 20.6597, -103.3496, 5.3, -6},
	{"Monterrey", "MX", NorthAmerica, 25.6866, -100.3161, 5.3, -6},
	{"Guatemala City", "GT", NorthAmerica, 14.6349, -90.5069, 3.0, -6},
	{"Havana", "CU", NorthAmerica, 23.1136, -82.3666, 2.1, -5},
	{"Santo Domingo", "DO", NorthAmerica, 18.4861, -69.9312, 3.5, -4},
	{"Panama City", "PA", NorthAmerica, 8.9824, -79.5199, 1.9, -5},

	// South America.
	{"Sao Paulo", "BR", SouthAmerica, -23.5505, -46.6333, 22.4, -3},
	{"Rio de Janeiro", "BR", SouthAmerica, -22.9068, -43.1729, 13.6, -3},
	{"Buenos Aires", "AR", SouthAmerica, -34.6037, -58.3816, 15.4, -3},
	{"Lima", "PE", SouthAmerica, -12.0464, -77.0428, 11.0, -5},
	{"Bogota", "CO", SouthAmerica, 4.7110, -74.0721, 11.3, -5},
	{"Santiago", "CL", SouthAmerica, -33.4489, -70.6693, 6.9, -4},
	{"Belo Horizonte", "BR", SouthAmerica, -19.9167, -43.9345, 6.1, -3},
	{"Caracas", "VE", SouthAmerica, 10.4806, -66.9036, 2.9, -4},
	{"Brasilia", "BR", SouthAmerica, -15.7975, -47.8919, 4.8, -3},
	{"Porto Alegre", "BR", SouthAmerica, -30.0346, -51.2177, 4.4, -3},
	{"Recife", "BR", SouthAmerica, -8.0476, -34.8770, 4.1, -3},
	{"Fortaleza", "BR", SouthAmerica, -3.7319, -38.5267, 4.1, -3},
	{"Medellin", "CO", SouthAmerica, 6.2442, -75.5812, 4.1, -5},
	{"Quito", "EC", SouthAmerica, -0.1807, -78.4678, 2.0, -5},
	{"Guayaquil", "EC", SouthAmerica, -2.1710, -79.9224, 3.1, -5},
	{"Montevideo", "UY", SouthAmerica, -34.9011, -56.1645, 1.8, -3},

	// Europe.
	{"London", "GB", Europe, 51.5074, -0.1278, 14.8, 0},
	{"Paris", "FR", Europe, 48.8566, 2.3522, 12.3, 1},
	{"Moscow", "RU", Europe, 55.7558, 37.6173, 17.1, 3},
	{"Istanbul", "TR", Europe, 41.0082, 28.9784, 15.6, 3},
	{"Madrid", "ES", Europe, 40.4168, -3.7038, 6.7, 1},
	{"Barcelona", "ES", Europe, 41.3851, 2.1734, 5.6, 1},
	{"Berlin", "DE", Europe, 52.5200, 13.4050, 6.1, 1},
	{"Essen", "DE", Europe, 51.4556, 7.0116, 5.1, 1},
	{"Milan", "IT", Europe, 45.4642, 9.1900, 4.3, 1},
	{"Rome", "IT", Europe, 41.9028, 12.4964, 4.3, 1},
	{"Naples", "IT", Europe, 40.8518, 14.2681, 3.1, 1},
	{"Athens", "GR", Europe, 37.9838, 23.7275, 3.6, 2},
	{"Saint Petersburg", "RU", Europe, 59.9311, 30.3609, 5.4, 3},
	{"Kyiv", "UA", Europe, 50.4501, 30.5234, 3.5, 2},
	{"Warsaw", "PL", Europe, 52.2297, 21.0122, 3.1, 1},
	{"Vienna", "AT", Europe, 48.2082, 16.3738, 2.9, 1},
	{"Budapest", "HU", Europe, 47.4979, 19.0402, 3.0, 1},
	{"Bucharest", "RO", Europe, 44.4268, 26.1025, 2.3, 2},
	{"Hamburg", "DE", Europe, 53.5511, 9.9937, 3.4, 1},
	{"Munich", "DE", Europe, 48.1351, 11.5820, 2.9, 1},
	{"Frankfurt", "DE", Europe, 50.1109, 8.6821, 2.7, 1},
	{"Amsterdam", "NL", Europe, 52.3676, 4.9041, 2.5, 1},
	{"Brussels", "BE", Europe, 50.8503, 4.3517, 2.1, 1},
	{"Stockholm", "SE", Europe, 59.3293, 18.0686, 2.4, 1},
	{"Copenhagen", "DK", Europe, 55.6761, 12.5683, 2.1, 1},
	{"Oslo", "NO", Europe, 59.9139, 10.7522, 1.6, 1},
	{"Helsinki", "FI", Europe, 60.1699, 24.9384, 1.5, 2},
	{"Dublin", "IE", Europe, 53.3498, -6.2603, 1.9, 0},
	{"Lisbon", "PT", Europe, 38.7223, -9.1393, 2.9, 0},
	{"Manchester", "GB", Europe, 53.4808, -2.2426, 2.8, 0},
	{"Zurich", "CH", Europe, 47.3769, 8.5417, 1.4, 1},
	{"Prague", "CZ", Europe, 50.0755, 14.4378, 2.7, 1},

	// Asia.
	{"Tokyo", "JP", Asia, 35.6762, 139.6503, 37.4, 9},
	{"Delhi", "IN", Asia, 28.7041, 77.1025, 32.9, 5.5},
	{"Shanghai", "CN", Asia, 31.2304, 121.4737, 29.2, 8},
	{"Dhaka", "BD", Asia, 23.8103, 90.4125, 23.2, 6},
	{"Beijing", "CN", Asia, 39.9042, 116.4074, 21.8, 8},
	{"Mumbai", "IN", Asia, 19.0760, 72.8777, 21.3, 5.5},
	{"Osaka", "JP", Asia, 34.6937, 135.5023, 19.0, 9},
	{"Chongqing", "CN", Asia, 29.4316, 106.9123, 17.3, 8},
	{"Karachi", "PK", Asia, 24.8607, 67.0011, 17.2, 5},
	{"Kolkata", "IN", Asia, 22.5726, 88.3639, 15.3, 5.5},
	{"Manila", "PH", Asia, 14.5995, 120.9842, 14.4, 8},
	{"Guangzhou", "CN", Asia, 23.1291, 113.2644, 14.0, 8},
	{"Tianjin", "CN", Asia, 39.3434, 117.3616, 13.9, 8},
	{"Shenzhen", "CN", Asia, 22.5431, 114.0579, 12.8, 8},
	{"Lahore", "PK", Asia, 31.5204, 74.3587, 13.5, 5},
	{"Bangalore", "IN", Asia, 12.9716, 77.5946, 13.2, 5.5},
	{"Jakarta", "ID", Asia, -6.2088, 106.8456, 11.0, 7},
	{"Chennai", "IN", Asia, 13.0827, 80.2707, 11.5, 5.5},
	{"Seoul", "KR", Asia, 37.5665, 126.9780, 25.0, 9},
	{"Bangkok", "TH", Asia, 13.7563, 100.5018, 10.7, 7},
	{"Hyderabad", "IN", Asia, 17.3850, 78.4867, 10.5, 5.5},
	{"Chengdu", "CN", Asia, 30.5728, 104.0668, 9.5, 8},
	{"Ho Chi Minh City", "VN", Asia, 10.8231, 106.6297, 9.3, 7},
	{"Tehran", "IR", Asia, 35.6892, 51.3890, 9.4, 3.5},
	{"Hong Kong", "HK", Asia, 22.3193, 114.1694, 7.5, 8},
	{"Kuala Lumpur", "MY", Asia, 3.1390, 101.6869, 8.4, 8},
	{"Wuhan", "CN", Asia, 30.5928, 114.3055, 8.6, 8},
	{"Hanoi", "VN", Asia, 21.0278, 105.8342, 5.1, 7},
	{"Ahmedabad", "IN", Asia, 23.0225, 72.5714, 8.5, 5.5},
	{"Riyadh", "SA", Asia, 24.7136, 46.6753, 7.5, 3},
	{"Baghdad", "IQ", Asia, 33.3152, 44.3661, 7.5, 3},
	{"Singapore", "SG", Asia, 1.3521, 103.8198, 5.9, 8},
	{"Taipei", "TW", Asia, 25.0330, 121.5654, 7.0, 8},
	{"Yangon", "MM", Asia, 16.8409, 96.1735, 5.6, 6.5},
	{"Pune", "IN", Asia, 18.5204, 73.8567, 7.0, 5.5},
	{"Dubai", "AE", Asia, 25.2048, 55.2708, 3.5, 4},
	{"Tel Aviv", "IL", Asia, 32.0853, 34.7818, 4.2, 2},
	{"Nagoya", "JP", Asia, 35.1815, 136.9066, 9.5, 9},
	{"Xi'an", "CN", Asia, 34.3416, 108.9398, 8.0, 8},
	{"Ankara", "TR", Asia, 39.9334, 32.8597, 5.3, 3},
	{"Kabul", "AF", Asia, 34.5553, 69.2075, 4.6, 4.5},
	{"Tashkent", "UZ", Asia, 41.2995, 69.2401, 2.9, 5},
	{"Almaty", "KZ", Asia, 43.2220, 76.8512, 2.0, 5},
	{"Colombo", "LK", Asia, 6.9271, 79.8612, 2.3, 5.5},
	{"Kathmandu", "NP", Asia, 27.7172, 85.3240, 1.5, 5.75},

	// Africa.
	{"Lagos", "NG", Africa, 6.5244, 3.3792, 15.9, 1},
	{"Cairo", "EG", Africa, 30.0444, 31.2357, 22.2, 2},
	{"Kinshasa", "CD", Africa, -4.4419, 15.2663, 16.3, 1},
	{"Johannesburg", "ZA", Africa, -26.2041, 28.0473, 10.0, 2},
	{"Luanda", "AO", Africa, -8.8390, 13.2894, 9.3, 1},
	{"Dar es Salaam", "TZ", Africa, -6.7924, 39.2083, 7.8, 3},
	{"Khartoum", "SD", Africa, 15.5007, 32.5599, 6.3, 2},
	{"Abidjan", "CI", Africa, 5.3600, -4.0083, 5.8, 0},
	{"Alexandria", "EG", Africa, 31.2001, 29.9187, 5.6, 2},
	{"Nairobi", "KE", Africa, -1.2921, 36.8219, 5.3, 3},
	{"Addis Ababa", "ET", Africa, 9.0300, 38.7400, 5.5, 3},
	{"Cape Town", "ZA", Africa, -33.9249, 18.4241, 4.8, 2},
	{"Casablanca", "MA", Africa, 33.5731, -7.5898, 4.3, 1},
	{"Accra", "GH", Africa, 5.6037, -0.1870, 2.6, 0},
	{"Kano", "NG", Africa, 12.0022, 8.5920, 4.4, 1},
	{"Dakar", "SN", Africa, 14.7167, -17.4677, 3.3, 0},
	{"Algiers", "DZ", Africa, 36.7538, 3.0588, 2.9, 1},
	{"Durban", "ZA", Africa, -29.8587, 31.0218, 3.2, 2},
	{"Kampala", "UG", Africa, 0.3476, 32.5825, 3.7, 3},
	{"Tunis", "TN", Africa, 36.8065, 10.1815, 2.4, 1},

	// Oceania.
	{"Sydney", "AU", Oceania, -33.8688, 151.2093, 5.3, 10},
	{"Melbourne", "AU", Oceania, -37.8136, 144.9631, 5.2, 10},
	{"Brisbane", "AU", Oceania, -27.4698, 153.0251, 2.6, 10},
	{"Perth", "AU", Oceania, -31.9505, 115.8605, 2.2, 8},
	{"Auckland", "NZ", Oceania, -36.8485, 174.7633, 1.7, 12},
	{"Adelaide", "AU", Oceania, -34.9285, 138.6007, 1.4, 9.5},
}

// cloudRegions maps the central-region names Config.CentralRegions accepts
// to the metro where that region's data centres stand.
var cloudRegions = map[string]string{
	"us-east":      "Washington",
	"us-west":      "San Francisco",
	"us-central":   "Dallas",
	"ca-central":   "Montreal",
	"sa-east":      "Sao Paulo",
	"eu-west":      "Dublin",
	"eu-central":   "Frankfurt",
	"eu-north":     "Stockholm",
	"uk-south":     "London",
	"me-central":   "Dubai",
	"af-south":     "Johannesburg",
	"ap-south":     "Mumbai",
	"ap-southeast": "Singapore",
	"ap-east":      "Hong Kong",
	"ap-northeast": "Tokyo",
	"au-southeast": "Sydney",
}

// Metros returns a copy of the built-in table of metropolitan areas.
func Metros() []Metro {
	out := make([]Metro, len(metros))
	copy(out, metros)
	return out
}
