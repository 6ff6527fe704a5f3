# Many sites on one port (tests): three sites routed by host name share VIP port 80 (redirected)
# and 443 (TLS by SNI from one crt-list): www.example.com and example.com -> pool web,
# *.shop.example.com -> the site's own backends, api.example.com: /api -> pool api, the rest -> its
# own backends. A Host no site claims gets 421 from nginx. The test certificates below are
# self-signed, valid until 9999 (tests/tlsgen.py made them), so the golden model files stay put.
proxytier:
  interface: host0
  members:
    - id: proxy1
      address: 198.18.0.11
    - id: proxy2
      address: 198.18.0.12
    - id: proxy3
      address: 198.18.0.13
  vips:
    - address: 198.18.0.101/24
      vrid: 51
    - address: 198.18.0.102/24
      vrid: 52
    - address: 198.18.0.103/24
      vrid: 53
  upstreams:
    - name: web
      backends:
        - 198.18.0.21:8080
        - 198.18.0.22:8080
    - name: api
      backends:
        - 198.18.0.31:9000
        - 198.18.0.32:9000
      timeouts:
        read: 5s
      next_upstream_tries: 2
  sites:
    - name: www
      port: 80
      nginx_port: 8080
      hosts: [www.example.com, example.com]
      routes:
        - path: /
          upstream: web
      tls:
        port: 443
        redirect_http: true
        hsts: {max_age: 31536000}
        certificate: |
          -----BEGIN CERTIFICATE-----
          MIIC7zCCAdegAwIBAgIUXdk5Hl8NMV7yYZOxTvcTuH638h4wDQYJKoZIhvcNAQEL
          BQAwGjEYMBYGA1UEAwwPd3d3LmV4YW1wbGUuY29tMCAXDTI2MDEwMTAwMDAwMFoY
          Dzk5OTkxMjMxMjM1OTU5WjAaMRgwFgYDVQQDDA93d3cuZXhhbXBsZS5jb20wggEi
          MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCdulPt+XqkpO1GaXTYM8WxX3G0
          rpvLyAxBYGHK7XDMMmCpegsb0L3HbGFWR1yvaecyvngG579lp9/fx8MiqiJkDa4Q
          5MZt4yJ3oFtIPCMTO8z/vP3HB9xYIiqPXPVBbTpOS8nClRayTDRTByx1ixNM/oFr
          R+PApnPhiP9YXyBPYveVRHv2pgt7aiJUbYHbuOa/0LZU9b38Ngf2PmB/hE6VAva7
          G6RoWlRMH6SzAHhM7u+w69+1OHSoQyK9avlQ56YrDuLKTluDAn2wrUN4aa/w5NaI
          dALTpg8ExU/+ePshBK6k3NkFt+1T5oXCZOD+o7YiJsZyVt3W8+pRZk/Gv8RbAgMB
          AAGjKzApMCcGA1UdEQQgMB6CD3d3dy5leGFtcGxlLmNvbYILZXhhbXBsZS5jb20w
          DQYJKoZIhvcNAQELBQADggEBAGFMPT5x2WdsmbYVZiN+NiasmiqHf82rmpuGdtWS
          r1XuK7ovmvm4JvjYSA6wMQlWs+078scp4qhImxvK1bTtTceh0F9O46apTw7kpQBi
          VyFZ3AExgemDfKolf/WzXGPaS6ipICoq6K+pAymghHvD9r46xa3ETLe8AwsuL0Gw
          Q7H3YlbiOIpA9bo9Y7b438Nse1n4m2ROSMwCvk0z/n/I4TWXuQ8sgz0Q8k2i6MH2
          W/cf9oOXcwayA/ZpSYkvgsYs8cP16emFhu+LXbQdukLfWh5mNwIPl/ojtgviPT01
          fSdHZ10dtvxVYsyHePOfjW/cSdK4GgvqKBJ1gxfP0hr4iBQ=
          -----END CERTIFICATE-----
        key: |
          -----BEGIN PRIVATE KEY-----
          MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCdulPt+XqkpO1G
          aXTYM8WxX3G0rpvLyAxBYGHK7XDMMmCpegsb0L3HbGFWR1yvaecyvngG579lp9/f
          x8MiqiJkDa4Q5MZt4yJ3oFtIPCMTO8z/vP3HB9xYIiqPXPVBbTpOS8nClRayTDRT
          Byx1ixNM/oFrR+PApnPhiP9YXyBPYveVRHv2pgt7aiJUbYHbuOa/0LZU9b38Ngf2
          PmB/hE6VAva7G6RoWlRMH6SzAHhM7u+w69+1OHSoQyK9avlQ56YrDuLKTluDAn2w
          rUN4aa/w5NaIdALTpg8ExU/+ePshBK6k3NkFt+1T5oXCZOD+o7YiJsZyVt3W8+pR
          Zk/Gv8RbAgMBAAECggEABIN7ioLwczvJI6uXoKJAPrq9QLFO39b6IGedpd8UuxkQ
          OwHf1qPVrjPpJdafa50+p+0fobd9LecKsqx2qrbqio+1QbejVeda9upoaLecX+E6
          phNEW8A5EcQwRBGqkQ3o+MzRasItHlRXVlDJEkj5M8nzOsMzQu2TsH2HG4Ix6TSw
          mcUvB7Apa3a8ir+DVD1fZ9Dd36nw1/QvFvAyGdxX3xv4g8ppZ1CJ2B3PbE1MClh+
          aBB/88zdm1iRlV/Ma8iQ/rk7g/3agnFzv1Eyhgn7/LGA45xAirfjOo2rXK0+5EHW
          H/dfzx7Lu/7kn8JtPZGk2xCbDuMjU7vJbScerrq6jQKBgQDUN+n02yBCRdT+bYiA
          5PhFL7Bq4iLya2M72t7ESJ5QsO638IK3yDDcuihUNo9EuSZENtgXYIMYUw1IKen0
          vpH4Fg84rG61Whec9GC+5iDt4k+dWgi+Em1sr/W3GikyQ4MA7u9D2wzCs7y4vANr
          Xg7oZEwWwUsf7TQ+QyN4UPBBjwKBgQC+RI2qdMqU8HR3KTjscxZPyCL545u6toj9
          SRXbhCqAjWiIJxiw1rv1Ek+vT+5G3kXUjlL9W3Z7gPQUJGmEd5dV9Asclp5DuWtB
          KiLCzVtHG7mKLyQy2GCDdUV0j/rUilK181Aiwr6ddztUXk29UZAAABhAAJKEZ3qG
          mB32j+5SdQKBgQCxgJMPWrkAtagRp0wlg16lf93viHXyjh/SUJ9DTfodQ+BnuaOc
          VLWJ6asRxRDQSozXQYg9BVyhW9YgJe6p5zvwZYMVxCRVS6W0gjLpeVLRphkxY70s
          Pf2IiyTaoecTQ6SvgypddzqVIAEaAyhZBbMybbG21rYfXif0a/OfDxPlwQKBgD6h
          iFSU716JrHzRJ/jFhZGrmr/RSaDzlzJxDW3eGrOIWOGApSMI/IQWi/50fEX9wtTO
          KMlXgy/yaeX7enRtfXaAx+uYNO6sKX8g5KJlQOeuW6v+CpdmHJcJUlylTHcMNV/J
          gRaALojdB72k8UghghpN7a2bwp8tBOsrRam1BUlFAoGBAIOFRRClTqx5pt+FIQzB
          MYOg1xBlLX5k8kx0XmloPAUXITMePsoLfiaQ40vr8nvTCkhCDVrmumAfWtdeJ0Yk
          TtMzNWOU3bLXbrhuIkeAmauzFOK2KbH1HjOd1ily9cPrU+4Ct+Vsq5Q5kZ/yYwk6
          2MKkldgKdr223Zr9ZT0NExXy
          -----END PRIVATE KEY-----
    - name: shop
      port: 80
      nginx_port: 8080
      hosts: ['*.shop.example.com']
      backends:
        - 198.18.0.41:8080
      tls:
        port: 443
        redirect_http: true
        hsts: {max_age: 31536000}
        certificate: |
          -----BEGIN CERTIFICATE-----
          MIIBXzCCAQWgAwIBAgIUC19lCg0r0kyqFBKHot896g8jHsgwCgYIKoZIzj0EAwIw
          HTEbMBkGA1UEAwwSKi5zaG9wLmV4YW1wbGUuY29tMCAXDTI2MDEwMTAwMDAwMFoY
          Dzk5OTkxMjMxMjM1OTU5WjAdMRswGQYDVQQDDBIqLnNob3AuZXhhbXBsZS5jb20w
          WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQv5tMO1PrLW+LtDGCgJ4BQW/O0L+ib
          QgrImAwqAR8iNZnkJe9hHR1hWK4bEZLjdfinxwCr+dDHaM8KEIndqe+OoyEwHzAd
          BgNVHREEFjAUghIqLnNob3AuZXhhbXBsZS5jb20wCgYIKoZIzj0EAwIDSAAwRQIg
          P2hBSloEgUYTwRcK+RdkVDoixljv38V8TZe75NoxFIACIQDtgklwQBj+BxdvJXDS
          +SfDhN+/Fn8znT1lyVyONu+ypA==
          -----END CERTIFICATE-----
        key: |
          -----BEGIN PRIVATE KEY-----
          MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgouELCNse4wEIXn7Y
          jpWLvEevox0SROGJm3eZQ8xRF82hRANCAAQv5tMO1PrLW+LtDGCgJ4BQW/O0L+ib
          QgrImAwqAR8iNZnkJe9hHR1hWK4bEZLjdfinxwCr+dDHaM8KEIndqe+O
          -----END PRIVATE KEY-----
    - name: api
      port: 80
      nginx_port: 8080
      hosts: [api.example.com]
      routes:
        - path: /api
          upstream: api
      backends:
        - 198.18.0.51:8080
      tls:
        port: 443
        redirect_http: true
        hsts: {max_age: 31536000}
        certificate: |
          -----BEGIN CERTIFICATE-----
          MIIBVjCB/KADAgECAhQbDX8/qNnWRzTw1scPnV5+IlgTbjAKBggqhkjOPQQDAjAa
          MRgwFgYDVQQDDA9hcGkuZXhhbXBsZS5jb20wIBcNMjYwMTAxMDAwMDAwWhgPOTk5
          OTEyMzEyMzU5NTlaMBoxGDAWBgNVBAMMD2FwaS5leGFtcGxlLmNvbTBZMBMGByqG
          SM49AgEGCCqGSM49AwEHA0IABBBvsWf11hiRSUofrOj9LABOAyDfcK1aOu94LCYE
          1WxKPLk8xP2/jdMT/lleWeOHPcDh9CQULnikNS5FAOKIE3GjHjAcMBoGA1UdEQQT
          MBGCD2FwaS5leGFtcGxlLmNvbTAKBggqhkjOPQQDAgNJADBGAiEA3w+BzatS5ZXW
          Mi53ph6IEq90cctuBcf3DNlXmfSWapkCIQDObQCYyyGwYGt1QD+nkUW1kRUTL4RG
          ZetgAMsaguTqVw==
          -----END CERTIFICATE-----
        key: |
          -----BEGIN PRIVATE KEY-----
          MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1In0+ifKeDTwD780
          tpIcoWfxBOyxSkNra9Ghf0HGpdihRANCAAQQb7Fn9dYYkUlKH6zo/SwATgMg33Ct
          WjrveCwmBNVsSjy5PMT9v43TE/5ZXlnjhz3A4fQkFC54pDUuRQDiiBNx
          -----END PRIVATE KEY-----
